package admin

import (
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// CallView is one row of the live mapping table, exactly the object that
// GET /v1/calls and `pptpgw calls --json` print (DESIGN.md "Admin socket").
// Its field names and order are the API: do not change them.
type CallView struct {
	ID           string    `json:"id"`
	State        string    `json:"state"` // pending, established, closing
	Role         string    `json:"role"`  // pns-inside, pac-inside, local-pns, local-pac (the router's own)
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
	// PickedUp: the call's setup was not seen (connection first seen
	// mid-stream); its IDs pass unchanged.
	PickedUp bool `json:"picked_up,omitempty"`
	// Auth and MPPE: what the call's PPP link negotiated, e.g.
	// "mschapv2" and "128-bit stateless"; "" until known.
	Auth string `json:"auth"`
	MPPE string `json:"mppe"`
	// Node: the gateway of a pair whose call it is (--ha-node); omitted
	// without a pair.
	Node string `json:"node,omitempty"`
}

// CallsBody is the body of GET /v1/calls.
type CallsBody struct {
	Calls []CallView `json:"calls"`
}

// ViewOf is call c as the API shows it. A tombstone (refused or cleared,
// its outer ID still reserved) shows as closing.
func ViewOf(c conntrack.CallInfo) CallView {
	st := c.State.String()
	if c.State == conntrack.StateRefused {
		st = "closing"
	}
	return CallView{
		ID: c.ID(), State: st, Role: c.Role.String(),
		InsideAddr: c.Inside.String(), InsideCallID: c.InsideID,
		PublicAddr: c.Public.String(), OuterCallID: c.OuterID,
		PeerAddr: c.Peer.String(), PeerCallID: c.PeerID,
		Created:   time.Unix(0, c.Created).UTC(),
		LastSeen:  time.Unix(0, c.LastSeen).UTC(),
		PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut,
		BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		PickedUp: c.PickedUp,
		Auth:     c.Auth.String(), MPPE: c.MPPE,
		Node: c.Conn.Node,
	}
}

// Views is ViewOf of every call.
func Views(calls []conntrack.CallInfo) []CallView {
	out := make([]CallView, len(calls))
	for i, c := range calls {
		out[i] = ViewOf(c)
	}
	return out
}
