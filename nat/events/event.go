// Package events is the live event stream of a gateway (`pptpgw events`,
// GET /v1/events): a Hub hears the call table's events (it is a
// conntrack.Observer and DetailObserver) and the fast paths' mappings
// entering and leaving the kernel, and hands each to every subscriber
// whose Filter it matches through a bounded buffer. Publishing never
// blocks: a subscriber that does not keep up loses events, counted and
// announced in its stream by a Lost event at the place they were lost.
package events

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// Type is what happened.
type Type string

// The event types, in the order of a call's life. The part before the
// dash is the type's group: a Filter's "call" matches every call-*.
const (
	ConnOpen    Type = "conn-open"    // a control connection is tracked
	ConnClose   Type = "conn-close"   // it ended (Reason: fin, rst, stop-control-connection, control-idle)
	ConnDenied  Type = "conn-denied"  // the policy refused a new one (Reason: deny-inside, deny-peer)
	CallRequest Type = "call-request" // an Outgoing- or Incoming-Call-Request passed
	CallUp      Type = "call-up"      // the reply said yes: the call is set up
	CallRefused Type = "call-refused" // refused by the gateway (Reason: max-calls, ...)
	CallCleared Type = "call-cleared" // cleared while up (Reason: policy-*, deleted)
	CallDown    Type = "call-down"    // torn down (Reason: cdn, rst, gre-idle, ...), with its counters
	FastEnter   Type = "fast-enter"   // its GRE mapping entered a kernel fast path (Path)
	FastLeave   Type = "fast-leave"   // and left it
	Malformed   Type = "malformed"    // a control message the gateway could not parse (Reason)
	Lost        Type = "lost"         // Count events were lost here: the reader was too slow
)

// Types lists the types a Filter may name, in order (Lost is always
// delivered).
func Types() []Type {
	return []Type{ConnOpen, ConnClose, ConnDenied, CallRequest, CallUp, CallRefused, CallCleared, CallDown,
		FastEnter, FastLeave, Malformed}
}

// Event is one thing that happened. Call is set (HasCall) for call and
// fast-path events, Conn for connection events and as the call's
// connection; a fast-path event's call holds only its addresses and IDs.
type Event struct {
	Type    Type
	Time    time.Time
	Conn    conntrack.ConnInfo
	Call    conntrack.CallInfo
	HasCall bool
	Reason  string
	Path    string // fast-enter, fast-leave: "bpf" or "kernel"
	Count   uint64 // lost
}

// Inside and Peer are the addresses the Filter matches: the call's, else
// the connection's.
func (e *Event) Inside() conntrack.Addr {
	if e.HasCall {
		return e.Call.Inside
	}
	return e.Conn.Inside.Addr
}

func (e *Event) Peer() conntrack.Addr {
	if e.HasCall {
		return e.Call.Peer
	}
	return e.Conn.Outside.Addr
}

// Duration is how long a call lived, up to the event.
func (e *Event) Duration() time.Duration {
	if !e.HasCall || e.Call.Created == 0 {
		return 0
	}
	return max(e.Time.Sub(time.Unix(0, e.Call.Created)), 0)
}

// ParseTypes reads a comma-separated list of types or groups ("call",
// "conn", "fast").
func ParseTypes(s string) ([]Type, error) {
	var out []Type
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		n := len(out)
		for _, t := range Types() {
			if string(t) == w || strings.HasPrefix(string(t), w+"-") {
				out = append(out, t)
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("event type %q: want one of %s, or a group (conn, call, fast)", w, strings.ReplaceAll(joinTypes(Types()), ",", ", "))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func joinTypes(ts []Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
}
