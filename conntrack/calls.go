package conntrack

import (
	"errors"
	"fmt"
	"sort"

	"github.com/pptpgw/pptpgw/alg"
)

// CallInfo is one call as plain data: what Calls lists and observers hear.
// The admin socket shapes its JSON from it (cmd/pptpgw/admin.CallView).
type CallInfo struct {
	Conn      ConnInfo // its control connection
	Role      Role
	State     CallState
	Inside    Addr
	InsideID  uint16
	HasInside bool // InsideID is known (false: a request from outside not answered yet)
	Public    Addr
	OuterID   uint16
	Peer      Addr
	PeerID    uint16
	HasPeer   bool // PeerID is known
	Identity  bool // the kernel does not NAT it: its IDs pass unchanged
	// PickedUp: the call's setup was not seen (connection first seen
	// mid-stream); its IDs pass unchanged.
	PickedUp bool
	// Created and LastSeen are Unix nanoseconds, like every time of the
	// table. Created is when the call was requested (the request seen).
	Created, LastSeen int64
	// SetUp is when the reply set the call up (Unix nanoseconds; 0 when
	// not seen: picked up mid-stream, or restored from the state file).
	// SetUp - Created is the setup latency.
	SetUp                 int64
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	// Auth and MPPE: what the call's PPP link negotiated (policy.go), e.g.
	// "mschapv2" and "128-bit stateless"; MPPE is "" until known.
	Auth alg.Auth
	MPPE string
}

// ID is the call's stable name: public_addr/peer_addr/outer_call_id, or
// public_addr/peer_addr/pending-PEER_CALL_ID before the inside end has
// answered a request from outside.
func (c *CallInfo) ID() string {
	if !c.HasInside {
		return fmt.Sprintf("%s/%s/pending-%d", c.Public, c.Peer, c.PeerID)
	}
	return fmt.Sprintf("%s/%s/%d", c.Public, c.Peer, c.OuterID)
}

// ID is the call's stable name (CallInfo.ID).
func (k *Call) ID() string {
	i := CallInfo{HasInside: k.hasInside(), Public: k.Public, Peer: k.Peer, OuterID: k.OuterID, PeerID: k.PeerID}
	return i.ID()
}

func (k *Call) info() CallInfo {
	return CallInfo{
		Conn: k.conn.Info(), Role: k.Role(), State: k.State(),
		Inside: k.Inside, InsideID: k.InsideID, HasInside: k.hasInside(),
		Public: k.Public, OuterID: k.OuterID,
		Peer: k.Peer, PeerID: k.PeerID, HasPeer: k.hasPeer(),
		Identity: k.identity(), PickedUp: k.pickedUp(),
		Created: k.created, LastSeen: k.lastSeen.Load(), SetUp: k.setUpAt(),
		PacketsIn: k.pktsIn.Load(), PacketsOut: k.pktsOut.Load(),
		BytesIn: k.bytesIn.Load(), BytesOut: k.bytesOut.Load(),
		Auth: k.Auth(), MPPE: k.mppeString(),
	}
}

// Calls returns every call, sorted by ID.
func (t *Table) Calls() []CallInfo {
	t.mu.RLock()
	out := make([]CallInfo, 0, t.idx.active+t.idx.pending)
	for c := range t.idx.conns.all {
		for k := range c.eachCall {
			out = append(out, k.info())
		}
	}
	t.mu.RUnlock()
	sort.Sort(byID{out, ids(out)})
	return out
}

// byID sorts calls by their IDs, each formatted once.
type byID struct {
	calls []CallInfo
	ids   []string
}

func ids(calls []CallInfo) []string {
	s := make([]string, len(calls))
	for i := range calls {
		s[i] = calls[i].ID()
	}
	return s
}

func (s byID) Len() int           { return len(s.calls) }
func (s byID) Less(i, j int) bool { return s.ids[i] < s.ids[j] }
func (s byID) Swap(i, j int) {
	s.calls[i], s.calls[j] = s.calls[j], s.calls[i]
	s.ids[i], s.ids[j] = s.ids[j], s.ids[i]
}

// ConnCalls returns the control connection between a and b (either way
// round) and its calls in the order they were created; false when it is
// not tracked.
func (t *Table) ConnCalls(a, b Endpoint) (ConnInfo, []CallInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c := t.idx.conn(a, b)
	if c == nil {
		return ConnInfo{}, nil, false
	}
	out := make([]CallInfo, 0, c.numCalls())
	for k := range c.eachCall {
		out = append(out, k.info())
	}
	return c.Info(), out, true
}

// ErrNoCall is returned by Delete for an ID the table does not have.
var ErrNoCall = errors.New("no such call")

// Delete clears the call named id (admin socket) at now: its GRE mapping
// goes at once and its outer ID stays reserved as a tombstone; nothing is
// sent to the peers.
func (t *Table) Delete(id string, now int64) error {
	t.lock()
	defer t.unlock()
	for c := range t.idx.conns.all {
		for k := range c.eachCall {
			if k.ID() == id && k.State() != StateRefused {
				t.refuse(k, "deleted", now)
				return nil
			}
		}
	}
	return fmt.Errorf("call %q: %w", id, ErrNoCall)
}

// Expire applies the timeouts at now: idle calls and connections end,
// pending calls and tombstones past the setup timeout go, and ended
// connections go once their rewrite records have lingered.
func (t *Table) Expire(now int64) {
	t.lock()
	defer t.unlock()
	l := t.limits
	for c := range t.idx.conns.walk { // removeConn deletes c
		if t.repl.on && c.replicaOf().origin != "" {
			continue // another node's: its record's deletion removes it (replica.go)
		}
		if ended := c.ended(); ended != 0 {
			if now-ended >= int64(l.CloseLinger) {
				t.removeConn(c)
			}
			continue
		}
		if now-c.lastSeen >= int64(l.ControlIdle) {
			t.endConn(c, now, "control-idle")
			continue
		}
		if c.unconfirmed && now-c.restoredAt() >= int64(l.RestoreGrace) {
			t.endConn(c, now, "unconfirmed") // state.go
			continue
		}
		t.expireCalls(c, now)
	}
}

// expireCalls ends the calls of live connection c whose timeout passed.
func (t *Table) expireCalls(c *Conn, now int64) {
	l := t.limits
	for k := range c.eachCallBack {
		switch k.State() {
		case StatePending, StateRefused:
			if now-k.sinceAt() >= int64(l.SetupTimeout) {
				t.endCall(k, "setup-timeout")
			}
		default:
			if now-k.lastSeen.Load() >= int64(l.GREIdle) {
				t.endCall(k, "gre-idle")
			}
		}
	}
}

// Conns returns every control connection, oldest first.
func (t *Table) Conns() []ConnInfo {
	t.mu.RLock()
	out := make([]ConnInfo, 0, t.idx.conns.len())
	for c := range t.idx.conns.all {
		out = append(out, c.Info())
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out
}
