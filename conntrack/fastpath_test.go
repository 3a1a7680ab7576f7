package conntrack_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

func mapString(m conntrack.GREMap) string {
	return fmt.Sprintf("%s/%d->%s/%d out %s>%s/%d->%s", m.Peer, m.OuterID, m.Inside, m.InsideID,
		m.Inside, m.Peer, m.PeerID, m.Public)
}

func wantDesired(t *testing.T, tbl *conntrack.Table, want ...string) {
	t.Helper()
	got, _ := desired(tbl)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("desired %q, want %q", got, want)
	}
}

// TestFastPathDesired: the fast path is offered the calls up, each new
// call once it is established, none refused, and loses them on teardown
// and admin delete; counts it reports land on the calls.
func TestFastPathDesired(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	c10 := "198.51.100.10/16->10.0.0.1/16 out 10.0.0.1>198.51.100.10/32784->203.0.113.1"
	c20 := "198.51.100.10/32->10.0.0.1/32 out 10.0.0.1>198.51.100.10/32800->203.0.113.1"
	c30 := "198.51.100.10/48->10.0.0.1/48 out 10.0.0.1>198.51.100.10/32816->203.0.113.1"
	wantDesired(t, tbl, c10, c20)
	// A pending call is not given; its reply makes it so.
	out := f.send(dirOut, ocrq(0x30))
	wantDesired(t, tbl, c10, c20)
	f.send(dirIn, ocrp(0x8030, u16(out, 12), 1))
	wantDesired(t, tbl, c10, c20, c30)
	// A refused reply gives nothing.
	out = f.send(dirOut, ocrq(0x40))
	f.send(dirIn, ocrp(0x8040, u16(out, 12), 2))
	wantDesired(t, tbl, c10, c20, c30)
	f.send(dirIn, cdn(0x8010))
	wantDesired(t, tbl, c20, c30)
	if err := tbl.Delete("203.0.113.1/198.51.100.10/32", t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	wantDesired(t, tbl, c30)

	m := conntrack.GREMap{Peer: pac1, OuterID: 0x30, Inside: cli1, InsideID: 0x30, PeerID: 0x8030, Public: pub1}
	tbl.FastPathCounters(m, true, 3, 300, t0)
	tbl.FastPathCounters(m, false, 2, 100, time.Time{})
	v := callByID(t, tbl, "203.0.113.1/198.51.100.10/48")
	if v.PacketsIn != 3 || v.BytesIn != 300 || v.PacketsOut != 2 || v.BytesOut != 100 {
		t.Errorf("counters after FastPathCounters: %+v", v)
	}
	f.send(dirIn, cdn(0x8030))
	wantDesired(t, tbl)
}

// TestFastPathWaitsForPolicy: with a policy that reads the PPP
// negotiation, a new call reaches the fast path only once that is over
// (here: the policy is lifted).
func TestFastPathWaitsForPolicy(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, t0.UnixNano())
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	f.pnsCall(0x10, 0x8010)
	wantDesired(t, tbl)
	tbl.SetPolicy(nil, t0.UnixNano())
	wantDesired(t, tbl, "198.51.100.10/16->10.0.0.1/16 out 10.0.0.1>198.51.100.10/32784->203.0.113.1")
}
