package conntrack

import "testing"

// TestOutIndexChain: calls whose keys collide are chained and told apart
// by their inside address, whichever of them goes first.
func TestOutIndexChain(t *testing.T) {
	peer, other := Addr{198, 51, 100, 2}, Addr{198, 51, 100, 3}
	// Three inside addresses whose 16-bit hashes agree, found by search.
	var inside []Addr
	want := outIndexKey(Addr{192, 168, 0, 0}, peer, 1)
	for i := 0; len(inside) < 3 && i < 1<<24; i++ {
		a := Addr{10, byte(i >> 16), byte(i >> 8), byte(i)}
		if len(inside) == 0 {
			want = outIndexKey(a, peer, 1)
		}
		if outIndexKey(a, peer, 1) == want {
			inside = append(inside, a)
		}
	}
	if len(inside) < 3 {
		t.Fatal("no colliding addresses")
	}
	calls := []*Call{
		{Inside: inside[0], Peer: peer, PeerID: 1},
		{Inside: inside[1], Peer: peer, PeerID: 1},
		{Inside: inside[2], Peer: peer, PeerID: 1},
		{Inside: inside[0], Peer: other, PeerID: 1},
	}
	for _, order := range [][]int{{0, 1, 2, 3}, {2, 1, 0, 3}, {1, 0, 2, 3}} {
		x := outIndex{}
		for _, c := range calls {
			x.add(c)
		}
		if x.calls() != len(calls) || len(x) != 2 {
			t.Fatalf("%d calls under %d keys", x.calls(), len(x))
		}
		left := map[*Call]bool{}
		for _, c := range calls {
			left[c] = true
		}
		for _, i := range order {
			x.del(calls[i])
			delete(left, calls[i])
			for _, c := range calls {
				got := x.get(c.Inside, c.Peer, c.PeerID)
				if want := left[c]; (got == c) != want || (!want && got != nil) {
					t.Fatalf("order %v, after deleting %d: get(%v) = %v, want present %v", order, i, c.PeerID, got, want)
				}
			}
		}
		if len(x) != 0 {
			t.Errorf("order %v: %d keys left", order, len(x))
		}
	}
}
