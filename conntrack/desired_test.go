package conntrack_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

// desired reads the table's desired fast-path state as strings.
func desired(tbl *conntrack.Table) ([]string, uint64) {
	maps, gen := tbl.Desired(nil)
	var s []string
	for _, m := range maps {
		s = append(s, mapString(m))
	}
	return s, gen
}

// subscriptions are the tests' DesiredChanged channels, one per table.
var subscriptions sync.Map

// signalled reports whether the test's DesiredChanged channel of tbl
// holds a signal, taking it (the first call subscribes).
func signalled(tbl *conntrack.Table) bool {
	ch, _ := subscriptions.LoadOrStore(tbl, tbl.DesiredChanged())
	select {
	case <-ch.(<-chan struct{}):
		return true
	default:
		return false
	}
}

// TestDesiredGeneration: a call going up enters the desired set and bumps
// the generation; a pending or refused call is not in it; teardown takes
// it out and bumps again.
func TestDesiredGeneration(t *testing.T) {
	tbl := newTable(conntrack.Limits{MaxCallsPerInside: 1})
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	signalled(tbl)
	got, g0 := desired(tbl)
	if len(got) != 0 {
		t.Fatalf("empty table desires %q", got)
	}
	out := f.send(dirOut, ocrq(0x10))
	if got, g := desired(tbl); len(got) != 0 || g != g0 || signalled(tbl) {
		t.Fatalf("pending call: %q gen %d (was %d)", got, g, g0)
	}
	f.send(dirIn, ocrp(0x8010, u16(out, 12), 1))
	c10 := "198.51.100.10/16->10.0.0.1/16 out 10.0.0.1>198.51.100.10/32784->203.0.113.1"
	got, g1 := desired(tbl)
	if len(got) != 1 || got[0] != c10 || g1 <= g0 || !signalled(tbl) {
		t.Fatalf("call up: %q gen %d (was %d)", got, g1, g0)
	}
	// Over MaxCallsPerInside: refused, never desired.
	out = f.send(dirOut, ocrq(0x20))
	f.send(dirIn, ocrp(0x8020, u16(out, 12), 1))
	if got, _ := desired(tbl); len(got) != 1 || got[0] != c10 {
		t.Fatalf("after a refused call: %q", got)
	}
	_, g2 := desired(tbl)
	signalled(tbl)
	f.send(dirIn, cdn(0x8010))
	got, g3 := desired(tbl)
	if len(got) != 0 || g3 <= g2 || !signalled(tbl) {
		t.Fatalf("after CDN: %q gen %d (was %d)", got, g3, g2)
	}
}

// TestDesiredDeleteExpireRestore: an admin delete, an idle timeout and a
// restore each change the set and bump the generation.
func TestDesiredDeleteExpireRestore(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	got, g0 := desired(tbl)
	if len(got) != 2 {
		t.Fatalf("two calls up, desired %q", got)
	}
	snap := tbl.Snapshot()
	if err := tbl.Delete("203.0.113.1/198.51.100.10/32", f.now); err != nil {
		t.Fatal(err)
	}
	got, g1 := desired(tbl)
	if len(got) != 1 || g1 <= g0 {
		t.Fatalf("after delete: %q gen %d (was %d)", got, g1, g0)
	}
	f.send(dirOut, echoRQ()) // the control connection stays alive
	tbl.Expire(f.now + int64(conntrack.DefaultGREIdle))
	got, g2 := desired(tbl)
	if len(got) != 0 || g2 <= g1 {
		t.Fatalf("after the GRE idle timeout: %q gen %d (was %d)", got, g2, g1)
	}
	t2 := newTable(conntrack.Limits{})
	_, r0 := desired(t2)
	signalled(t2) // subscribes
	if _, err := t2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got, r1 := desired(t2); len(got) != 2 || r1 <= r0 || !signalled(t2) {
		t.Fatalf("restored: %q gen %d (was %d)", got, r1, r0)
	}
}

// TestDesiredWaitsForNegotiation: with a policy that reads the PPP
// negotiation, a call up is desired only once its negotiation was seen;
// the packet that completes it bumps the generation.
func TestDesiredWaitsForNegotiation(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, t0.UnixNano())
	send, _, _ := policyCall(t, tbl)
	got, g0 := desired(tbl)
	if len(got) != 0 {
		t.Fatalf("negotiating call desired: %q", got)
	}
	signalled(tbl)
	last := len(msChapV2Call) - 2 // the first encrypted frame ends the watch
	for i, g := range msChapV2Call[:last] {
		if v := send(g); v != conntrack.GREForward {
			t.Fatalf("frame %d: %v", i, v)
		}
	}
	if got, g := desired(tbl); len(got) != 0 || g != g0 || signalled(tbl) {
		t.Fatalf("mid-negotiation: %q gen %d (was %d)", got, g, g0)
	}
	send(msChapV2Call[last])
	got, g1 := desired(tbl)
	if len(got) != 1 || g1 <= g0 || !signalled(tbl) {
		t.Fatalf("negotiation over: %q gen %d (was %d)", got, g1, g0)
	}
	// Lifting the policy changes what is desired: it bumps.
	tbl.SetPolicy(nil, t0.UnixNano())
	if _, g2 := desired(tbl); g2 <= g1 || !signalled(tbl) {
		t.Errorf("SetPolicy did not bump: gen %d (was %d)", g2, g1)
	}
}

// TestDesiredNoPolicyNoWait: without such a policy a call is desired as
// soon as it is up, negotiating or not.
func TestDesiredNoPolicyNoWait(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	policyCall(t, tbl)
	if got, _ := desired(tbl); len(got) != 1 {
		t.Fatalf("desired %q", got)
	}
}

// TestFastPathCounters: counts land on the call; a zero last-seen time
// means now by the table's clock when packets came, and nothing when none
// did; a known one is used as is.
func TestFastPathCounters(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	clock := nowAt(time.Hour)
	tbl.SetClock(func() int64 { return clock })
	twoCalls(t, tbl)
	maps, _ := tbl.Desired(nil)
	var m conntrack.GREMap
	for _, x := range maps {
		if x.OuterID == 16 {
			m = x
		}
	}
	id := callName(pub1, pac1, 16)
	before := callByID(t, tbl, id).LastSeen
	tbl.FastPathCounters(m, true, 0, 0, time.Time{})
	if v := callByID(t, tbl, id); !v.LastSeen.Equal(before) {
		t.Errorf("no packets moved last seen to %v", v.LastSeen)
	}
	tbl.FastPathCounters(m, true, 3, 300, time.Time{})
	if v := callByID(t, tbl, id); v.PacketsIn != 3 || v.BytesIn != 300 || !v.LastSeen.Equal(time.Unix(0, clock)) {
		t.Errorf("after 3 packets in: %+v", v)
	}
	last := t0.Add(2 * time.Hour)
	tbl.FastPathCounters(m, false, 2, 100, last)
	if v := callByID(t, tbl, id); v.PacketsOut != 2 || v.BytesOut != 100 || !v.LastSeen.Equal(last) {
		t.Errorf("after 2 packets out: %+v", v)
	}
	tbl.FastPathCounters(conntrack.GREMap{Peer: pac2, OuterID: 99}, true, 5, 5, last) // no such call
}
