package replay_test

import (
	"reflect"
	"sort"
	"testing"

	"github.com/pptpgw/pptpgw/nat/replay"
)

// TestSyntheticConversation checks the conversation the fuzz target
// re-segments: two clients with the same Call ID, the second's becomes
// 0x1235 outside, and the round trip is exact.
func TestSyntheticConversation(t *testing.T) {
	in := syntheticConversation()
	r := runReplay(t, writeRaw(t, in), synInside)
	checkReplay(t, in, prefixes(t, synInside), r, true)
	want := []replay.CallSummary{
		// The synthetic GRE carries IPv4 in clear, without LCP: no
		// authentication and no MPPE.
		withPPP(call(synA.Addr().String(), 0x1234, 0x1234, synPAC.Addr().String(), 0x0080, "set-up"), "none", "none"),
		withPPP(call(synB.Addr().String(), 0x1234, 0x1235, synPAC.Addr().String(), 0x0100, "set-up"), "none", "none"),
	}
	if !reflect.DeepEqual(r.sum.Calls, want) || len(r.sum.Dropped) != 0 {
		t.Errorf("calls =\n%s\ndropped %v, want\n%s", fmtCalls(r.sum.Calls), r.sum.Dropped, fmtCalls(want))
	}
	if len(r.lan) != len(in) {
		t.Errorf("--lan-out has %d packets, input %d", len(r.lan), len(in))
	}
}

// resegment cuts the control segments of pkts as cuts says: for each
// segment with a payload, in order, one byte gives the number of cuts
// (0..3), then one byte per cut its position; missing bytes mean no cut.
func resegment(pkts []packet, cuts []byte) []packet {
	next := func() (byte, bool) {
		if len(cuts) == 0 {
			return 0, false
		}
		b := cuts[0]
		cuts = cuts[1:]
		return b, true
	}
	var out []packet
	for _, p := range pkts {
		n := 0
		if isTCP(p.ip) {
			n = len(tcpPayload(p.ip))
		}
		if n < 2 {
			out = append(out, p)
			continue
		}
		k, _ := next()
		set := map[int]bool{}
		for i := 0; i < int(k%4); i++ {
			c, ok := next()
			if !ok {
				break
			}
			set[1+int(c)%(n-1)] = true
		}
		var pos []int
		for c := range set {
			pos = append(pos, c)
		}
		sort.Ints(pos)
		if len(pos) == 0 {
			out = append(out, p)
			continue
		}
		out = append(out, splitPacket(p, pos...)...)
	}
	return out
}

// FuzzControlStream is the stream rewriter's fuzz target: a valid PPTP
// control conversation (two clients, same Call ID, one PAC), its control
// segments cut at random points, must give the same control streams and
// GRE in --out as the unsplit run, the same calls, valid checksums and an
// exact round trip.
func FuzzControlStream(f *testing.F) {
	base := syntheticConversation()
	ref := runReplay(f, writeRaw(f, base), synInside)
	refView := viewOf(f, ref.out)
	f.Add([]byte{})
	f.Add([]byte{1, 12, 1, 13, 1, 14})
	// Cut every segment before byte 12, between 12 and 13, and between 14
	// and 15: inside every Call ID field.
	var split []byte
	for i := 0; i < 32; i++ {
		split = append(split, 3, 11, 12, 14)
	}
	f.Add(split)
	f.Fuzz(func(t *testing.T, cuts []byte) {
		v := resegment(base, cuts)
		checkResegmented(t, "fuzzed", v, synInside, ref, refView)
	})
}
