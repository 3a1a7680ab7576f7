package conntrack

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// CallView is one row of the live mapping table, exactly the object that
// GET /v1/calls and `pptpgw calls --json` print (DESIGN.md "Admin socket").
type CallView struct {
	ID           string    `json:"id"`
	State        string    `json:"state"` // pending, established, closing
	Role         string    `json:"role"`  // pns-inside, pac-inside
	InsideAddr   string    `json:"inside_addr"`
	InsideCallID uint16    `json:"inside_call_id"`
	PublicAddr   string    `json:"public_addr"`
	OuterCallID  uint16    `json:"outer_call_id"`
	PeerAddr     string    `json:"peer_addr"`
	PeerCallID   uint16    `json:"peer_call_id"`
	Created      time.Time `json:"created"`
	LastSeen     time.Time `json:"last_seen"`
	PacketsIn    uint64    `json:"packets_in"`
	PacketsOut   uint64    `json:"packets_out"`
	BytesIn      uint64    `json:"bytes_in"`
	BytesOut     uint64    `json:"bytes_out"`
	// PickedUp: the call\'s setup was not seen (connection first seen
	// mid-stream); its IDs pass unchanged.
	PickedUp bool `json:"picked_up,omitempty"`
	// Auth and MPPE: what the call's PPP link negotiated (policy.go), e.g.
	// "mschapv2" and "128-bit stateless"; "" until known.
	Auth string `json:"auth"`
	MPPE string `json:"mppe"`
}

// CallsBody is the body of GET /v1/calls.
type CallsBody struct {
	Calls []CallView `json:"calls"`
}

// ID is the call's stable name: public_addr/peer_addr/outer_call_id, or
// public_addr/peer_addr/pending-PEER_CALL_ID before the inside end has
// answered a request from outside.
func (k *Call) ID() string {
	if !k.hasInside {
		return fmt.Sprintf("%s/%s/pending-%d", k.Public, k.Peer, k.PeerID)
	}
	return fmt.Sprintf("%s/%s/%d", k.Public, k.Peer, k.OuterID)
}

func (k *Call) view() CallView {
	st := k.State.String()
	if k.State == StateRefused {
		st = "closing"
	}
	v := CallView{
		ID: k.ID(), State: st, Role: k.Role.String(),
		InsideAddr: k.Inside.String(), InsideCallID: k.InsideID,
		PublicAddr: k.Public.String(), OuterCallID: k.OuterID,
		PeerAddr: k.Peer.String(), PeerCallID: k.PeerID,
		Created:   time.Unix(0, k.created).UTC(),
		LastSeen:  time.Unix(0, k.lastSeen.Load()).UTC(),
		PacketsIn: k.pktsIn.Load(), PacketsOut: k.pktsOut.Load(),
		BytesIn: k.bytesIn.Load(), BytesOut: k.bytesOut.Load(),
		PickedUp: k.pickedUp,
		Auth:     k.Auth().String(), MPPE: k.mppeString(),
	}
	return v
}

// Calls returns the mapping table, sorted by ID.
func (t *Table) Calls() []CallView {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]CallView, 0, t.active+t.pending)
	for _, c := range t.conns {
		for _, k := range c.calls {
			out = append(out, k.view())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ErrNoCall is returned by Delete for an ID the table does not have.
var ErrNoCall = errors.New("no such call")

// Delete clears the call named id (admin socket): its GRE mapping goes at
// once and its outer ID stays reserved as a tombstone; nothing is sent to
// the peers.
func (t *Table) Delete(id string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		for _, k := range c.calls {
			if k.ID() == id && k.State != StateRefused {
				t.refuse(k, "deleted", now.UnixNano())
				return nil
			}
		}
	}
	return fmt.Errorf("call %q: %w", id, ErrNoCall)
}

// Expire applies the timeouts at time now: idle calls and connections end,
// pending calls and tombstones past the setup timeout go, and ended
// connections go once their rewrite records have lingered.
func (t *Table) Expire(now time.Time) {
	n := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.limits
	for _, c := range t.conns {
		if c.ended != 0 {
			if n-c.ended >= int64(l.CloseLinger) {
				t.removeConn(c)
			}
			continue
		}
		if n-c.lastSeen >= int64(l.ControlIdle) {
			t.endConn(c, n, "control-idle")
			continue
		}
		for i := len(c.calls) - 1; i >= 0; i-- {
			if i >= len(c.calls) {
				continue
			}
			k := c.calls[i]
			switch k.State {
			case StatePending, StateRefused:
				if n-k.since >= int64(l.SetupTimeout) {
					t.endCall(k, "setup-timeout")
				}
			default:
				if n-k.lastSeen.Load() >= int64(l.GREIdle) {
					t.endCall(k, "gre-idle")
				}
			}
		}
	}
}
