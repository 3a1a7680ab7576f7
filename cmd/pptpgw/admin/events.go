package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/events"
)

// EventSource is a Backend with a live event stream (GET /v1/events).
type EventSource interface {
	// SubscribeEvents subscribes to the events f matches; the server
	// closes the subscription when the reader goes.
	SubscribeEvents(f events.Filter) *events.Sub
}

// EventView is one line of GET /v1/events and `pptpgw events --json`:
// what happened (type, time), to which call (id, and the call as
// GET /v1/calls shows it) or control connection (conn), and why. A
// fast-path event names its call by id and addresses only.
type EventView struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"time"`
	ID         string    `json:"id,omitempty"`
	InsideAddr string    `json:"inside_addr,omitempty"`
	PeerAddr   string    `json:"peer_addr,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Path       string    `json:"path,omitempty"` // fast-enter, fast-leave: bpf or kernel
	// DurationSeconds is how long the call lived (call-down, call-cleared).
	DurationSeconds float64   `json:"duration_seconds,omitempty"`
	Call            *CallView `json:"call,omitempty"`
	Conn            *ConnView `json:"conn,omitempty"`
}

// ConnView is a control connection in an event: its ends as address:port.
type ConnView struct {
	Inside  string `json:"inside"`
	Outside string `json:"outside"`
	Public  string `json:"public"`
	Role    string `json:"role"`
}

// LostView is the line that says Count events were lost at this place of
// the stream, the reader being too slow: {"type":"lost","count":N}.
type LostView struct {
	Type  string `json:"type"`
	Count uint64 `json:"count"`
}

func endpointString(e conntrack.Endpoint) string {
	return netip.AddrPortFrom(e.Addr.IP(), e.Port).String()
}

// EventViewOf is e as the stream shows it.
func EventViewOf(e events.Event) EventView {
	v := EventView{Type: string(e.Type), Time: e.Time.UTC(), Reason: e.Reason, Path: e.Path,
		InsideAddr: e.Inside().String(), PeerAddr: e.Peer().String()}
	if !e.HasCall {
		c := e.Conn
		v.Conn = &ConnView{Inside: endpointString(c.Inside), Outside: endpointString(c.Outside),
			Public: endpointString(c.Public), Role: c.Role.String()}
		return v
	}
	v.ID = e.Call.ID()
	if e.Type == events.FastEnter || e.Type == events.FastLeave {
		return v
	}
	cv := ViewOf(e.Call)
	v.Call = &cv
	if e.Type == events.CallDown || e.Type == events.CallCleared {
		v.DurationSeconds = e.Duration().Round(time.Millisecond).Seconds()
	}
	return v
}

// eventsBuffer is each stream's buffer: a reader that falls this far
// behind loses events.
const eventsBuffer = events.DefaultBuffer

// handleEvents streams the events the query's filter matches as
// newline-delimited JSON, flushed per event, until the reader goes or the
// server shuts down. The stream lives as long as its reader: the
// listener's read and write timeouts are lifted for it.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	src, ok := s.backend.(EventSource)
	if !ok {
		writeError(w, http.StatusNotFound, "this daemon has no event stream")
		return
	}
	f, err := events.ParseQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sub := src.SubscribeEvents(f)
	defer sub.Close()
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		e, ok := sub.Next(r.Context().Done())
		if !ok {
			return
		}
		var v any = EventViewOf(e)
		if e.Type == events.Lost {
			v = LostView{Type: string(events.Lost), Count: e.Count}
		}
		// A reader that stopped reading blocks here until the socket's
		// buffer drains; the hub keeps counting what it loses meanwhile.
		if enc.Encode(v) != nil || rc.Flush() != nil {
			return
		}
	}
}

// callFilter is GET /v1/calls's query: inside and peer CIDRs, states.
type callFilter struct {
	inside, peer []netip.Prefix
	states       []string
}

var callStates = []string{"pending", "established", "closing"}

func parseCallFilter(q url.Values) (callFilter, error) {
	var f callFilter
	var err error
	for k, vs := range q {
		v := strings.Join(vs, ",")
		switch k {
		case "inside":
			f.inside, err = events.ParsePrefixes(v)
		case "peer":
			f.peer, err = events.ParsePrefixes(v)
		case "state":
			for _, st := range strings.Split(v, ",") {
				if !slices.Contains(callStates, st) {
					err = fmt.Errorf("%q is not a state (want %s)", st, strings.Join(callStates, ", "))
				}
				f.states = append(f.states, st)
			}
		default:
			err = fmt.Errorf("unknown parameter %q (want inside, peer, state)", k)
		}
		if err != nil {
			return callFilter{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	return f, nil
}

func (f *callFilter) match(c *CallView) bool {
	in, _ := netip.ParseAddr(c.InsideAddr)
	peer, _ := netip.ParseAddr(c.PeerAddr)
	return (len(f.states) == 0 || slices.Contains(f.states, c.State)) &&
		events.InPrefixes(f.inside, in) && events.InPrefixes(f.peer, peer)
}

// filterCalls keeps the calls r's query selects; without a query calls
// pass untouched (the unfiltered body stays byte for byte what it was).
func filterCalls(r *http.Request, calls []CallView) ([]CallView, error) {
	if r.URL.RawQuery == "" {
		return calls, nil
	}
	f, err := parseCallFilter(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(calls, func(c CallView) bool { return !f.match(&c) }), nil
}

// PrintEventHeader and PrintEvent write the stream for people, one event
// a line as it arrives (so in fixed-width columns, not a tabwriter's):
// TIME TYPE CALL INSIDE PEER DETAIL.
func PrintEventHeader(w io.Writer) {
	fmt.Fprintf(w, eventFormat, "TIME", "TYPE", "CALL", "INSIDE", "PEER", "DETAIL")
}

const eventFormat = "%-12s  %-12s  %-38s  %-21s  %-21s  %s\n"

// PrintEvent writes one line of the stream (a LostView when v.Type is
// lost and count is its count).
func PrintEvent(w io.Writer, v EventView, count uint64) {
	if v.Type == string(events.Lost) {
		fmt.Fprintf(w, eventFormat, time.Now().Format("15:04:05.000"), v.Type, "-", "-", "-",
			fmt.Sprintf("%d events lost: this reader was too slow", count))
		return
	}
	inside, peer, id := v.InsideAddr, v.PeerAddr, v.ID
	if id == "" {
		id = "-"
	}
	var detail []string
	if c := v.Conn; c != nil {
		inside, peer = c.Inside, c.Outside
		detail = append(detail, "public="+c.Public)
	}
	if c := v.Call; c != nil {
		insideKnown := !strings.Contains(c.ID, "/pending-")
		inside = endpoint(c.InsideAddr, c.InsideCallID, insideKnown)
		peer = endpoint(c.PeerAddr, c.PeerCallID, c.State != "pending" || !insideKnown)
		detail = append(detail, c.Role)
	}
	if v.Reason != "" {
		detail = append(detail, "reason="+v.Reason)
	}
	if v.Path != "" {
		detail = append(detail, "path="+v.Path)
	}
	if v.Type == string(events.CallDown) || v.Type == string(events.CallCleared) {
		c := v.Call
		detail = append(detail, fmt.Sprintf("duration=%s", time.Duration(v.DurationSeconds*float64(time.Second)).Round(time.Millisecond)),
			fmt.Sprintf("packets=%d/%d bytes=%d/%d", c.PacketsIn, c.PacketsOut, c.BytesIn, c.BytesOut))
	}
	fmt.Fprintf(w, eventFormat, v.Time.Local().Format("15:04:05.000"), v.Type, id, inside, peer, strings.Join(detail, " "))
}
