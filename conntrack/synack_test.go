package conntrack_test

import (
	"sync/atomic"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
)

// kernelResolver refuses its first question, like the live resolver: the
// opener's SYN reaches mangle FORWARD before the kernel has confirmed its
// conntrack entry, so ctnetlink does not know the connection until the
// SYN-ACK.
type kernelResolver struct {
	fakeResolver
	asked atomic.Int32
}

func (r *kernelResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if r.asked.Add(1) == 1 {
		return conntrack.ConnSpec{}, false
	}
	return r.fakeResolver.Resolve(src, dst)
}

// TestFirstSeenAtSYNACK: a connection first tracked at its SYN-ACK walks the
// opener's first message from its first byte, so a malformed one is counted
// (it used to be skipped silently by the search for a magic cookie), and a
// good one is walked as usual, whichever end opened.
func TestFirstSeenAtSYNACK(t *testing.T) {
	badCookie := sccrq()
	put16(badCookie, 4, 0xDEAD)
	for _, tc := range []struct {
		name  string
		flow  func(*conntrack.Table, conntrack.Resolver) *flow
		first []byte
		want  uint64
	}{
		{"pns inside, bad cookie", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pnsFlow(t, tb, r, cli1, 40000, pac1)
		}, badCookie, 1},
		{"pns inside, length 11", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pnsFlow(t, tb, r, cli1, 40000, pac1)
		}, func() []byte { b := sccrq(); put16(b, 0, 11); return b }(), 1},
		{"pac inside, bad cookie", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pacFlow(t, tb, r, srv1, rcli1, 40000)
		}, badCookie, 1},
		{"pns inside, good", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pnsFlow(t, tb, r, cli1, 40000, pac1)
		}, sccrq(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := conntrack.New(conntrack.Limits{}, nil)
			f := tc.flow(tbl, &kernelResolver{})
			opener := dirOut
			if f.ends[dirOut].Port == 1723 {
				opener = dirIn
			}
			f.noCheck = true // the SYN is not tracked
			f.open(opener)
			f.noCheck = false
			f.send(opener, tc.first)
			if !f.last.Tracked {
				t.Fatalf("the opener's first message was not tracked")
			}
			if got := tbl.Counters.Malformed.Load(); got != tc.want {
				t.Errorf("malformed = %d, want %d", got, tc.want)
			}
			if got := tbl.Counters.ControlMessages.Load(); tc.want == 0 && got != 1 {
				t.Errorf("control messages = %d, want 1", got)
			}
		})
	}
}
