package nft

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/pptpgw/pptpgw/conntrack"
)

func TestKeys(t *testing.T) {
	peer, public := conntrack.Addr{198, 51, 100, 2}, conntrack.Addr{203, 0, 113, 1}
	// As `nft --debug=netlink` shows the elements the nft CLI adds:
	// each field padded to 4 bytes.
	if got, want := greKey(peer, public, 0x4000), (key{198, 51, 100, 2, 203, 0, 113, 1, 0x40, 0, 0, 0}); got != want {
		t.Errorf("greKey % x, want % x", got, want)
	}
	if got := callID(0x1234); !bytes.Equal(got, []byte{0x12, 0x34}) {
		t.Errorf("callID % x", got)
	}
}

// TestPlan: the mirror turns the call table's changes into the fewest
// element operations: duplicates and deletes of what another call now
// holds are no-ops, a changed value is a delete then an add.
func TestPlan(t *testing.T) {
	c, err := nftables.New(nftables.WithTestDial(func([]netlink.Message) ([]netlink.Message, error) { return nil, nil }))
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{MarkBit: 0x10000000})
	m.in, m.out = map[key]*inEntry{}, map[key]*outEntry{}
	a := conntrack.GREMap{Peer: conntrack.Addr{198, 51, 100, 2}, OuterID: 1000, Public: conntrack.Addr{198, 51, 100, 1},
		Inside: conntrack.Addr{192, 168, 1, 10}, InsideID: 1000, PeerID: 128}
	b := a
	b.OuterID, b.Inside = 1001, conntrack.Addr{192, 168, 1, 11} // another call
	moved := a
	moved.Public = conntrack.Addr{198, 51, 100, 9} // same keys, another public address
	for _, st := range []struct {
		name string
		o    op
		want int
		in   int
		out  int
	}{
		{"add a", op{true, a}, 2, 1, 1},
		{"add a again", op{true, a}, 0, 1, 1},
		{"add b", op{true, b}, 2, 2, 2},
		// The inbound key holds the public address: a new element.
		{"a's public address changes", op{true, moved}, 3, 3, 2},
		{"delete a as it was: the outbound element is moved's now", op{false, a}, 1, 2, 2},
		{"delete moved", op{false, moved}, 2, 1, 1},
		{"delete a call never added", op{false, a}, 0, 1, 1},
		{"delete b", op{false, b}, 2, 0, 0},
	} {
		n, err := m.plan(c, st.o)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if n != st.want || len(m.in) != st.in || len(m.out) != st.out {
			t.Errorf("%s: %d operations, mirror %d in %d out; want %d, %d, %d", st.name, n, len(m.in), len(m.out), st.want, st.in, st.out)
		}
	}
}

// TestPollTicks: the counters are read every Poll up to pollCalls calls,
// then less often in proportion.
func TestPollTicks(t *testing.T) {
	m := New(Config{Poll: time.Second})
	for _, tt := range []struct{ calls, want int }{{0, 1}, {pollCalls, 1}, {2*pollCalls + 1, 2}, {10 * pollCalls, 10}} {
		m.in = map[key]*inEntry{}
		for i := range tt.calls {
			m.in[greKey(conntrack.Addr{198, 51, 100, 2}, conntrack.Addr{203, 0, 113, 1}, uint16(i))] = &inEntry{}
		}
		if got := m.pollTicks(); got != tt.want {
			t.Errorf("%d calls: every %d ticks, want %d", tt.calls, got, tt.want)
		}
	}
}
