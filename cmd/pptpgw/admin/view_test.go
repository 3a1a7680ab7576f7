package admin

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

func addr(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

// TestViewOfJSON: the table's plain call data becomes exactly the JSON
// GET /v1/calls has always printed (field order, names, time format, a
// tombstone shown as closing, picked_up omitted when false).
func TestViewOfJSON(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	calls := []conntrack.CallInfo{
		{Role: conntrack.RolePNSInside, State: conntrack.StateEstablished,
			Inside: addr("192.168.1.10"), InsideID: 7, HasInside: true, Public: addr("198.51.100.1"), OuterID: 40001,
			Peer: addr("203.0.113.5"), PeerID: 555, HasPeer: true,
			Created: t0.UnixNano(), LastSeen: t0.Add(1500 * time.Millisecond).UnixNano(),
			PacketsIn: 10, PacketsOut: 12, BytesIn: 1000, BytesOut: 1200,
			Auth: alg.AuthMSCHAPv2, MPPE: "128-bit stateless"},
		{Role: conntrack.RolePACInside, State: conntrack.StatePending,
			Inside: addr("192.168.1.20"), Public: addr("198.51.100.1"), Peer: addr("203.0.113.9"),
			PeerID: 77, HasPeer: true, Created: t0.UnixNano(), LastSeen: t0.UnixNano()},
		{Role: conntrack.RolePNSInside, State: conntrack.StateRefused, PickedUp: true,
			Inside: addr("192.168.1.11"), InsideID: 256, HasInside: true, Public: addr("198.51.100.1"), OuterID: 256,
			Peer: addr("203.0.113.5"), Created: t0.UnixNano(), LastSeen: t0.UnixNano()},
	}
	want := `{"calls":[` +
		`{"id":"198.51.100.1/203.0.113.5/40001","state":"established","role":"pns-inside","inside_addr":"192.168.1.10","inside_call_id":7,"public_addr":"198.51.100.1","outer_call_id":40001,"peer_addr":"203.0.113.5","peer_call_id":555,"created":"2024-05-01T12:00:00Z","last_seen":"2024-05-01T12:00:01.5Z","packets_in":10,"packets_out":12,"bytes_in":1000,"bytes_out":1200,"auth":"mschapv2","mppe":"128-bit stateless"},` +
		`{"id":"198.51.100.1/203.0.113.9/pending-77","state":"pending","role":"pac-inside","inside_addr":"192.168.1.20","inside_call_id":0,"public_addr":"198.51.100.1","outer_call_id":0,"peer_addr":"203.0.113.9","peer_call_id":77,"created":"2024-05-01T12:00:00Z","last_seen":"2024-05-01T12:00:00Z","packets_in":0,"packets_out":0,"bytes_in":0,"bytes_out":0,"auth":"","mppe":""},` +
		`{"id":"198.51.100.1/203.0.113.5/256","state":"closing","role":"pns-inside","inside_addr":"192.168.1.11","inside_call_id":256,"public_addr":"198.51.100.1","outer_call_id":256,"peer_addr":"203.0.113.5","peer_call_id":0,"created":"2024-05-01T12:00:00Z","last_seen":"2024-05-01T12:00:00Z","packets_in":0,"packets_out":0,"bytes_in":0,"bytes_out":0,"picked_up":true,"auth":"","mppe":""}]}`
	got, err := json.Marshal(CallsBody{Calls: Views(calls)})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("JSON:\n got %s\nwant %s", got, want)
	}
}
