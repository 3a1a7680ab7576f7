package conntrack_test

import (
	"fmt"
	"testing"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

// fastRec is a FastPath that records what it is told.
type fastRec struct{ ops []string }

func (r *fastRec) MapAdd(m conntrack.GREMap) { r.ops = append(r.ops, "add "+mapString(m)) }
func (r *fastRec) MapDel(m conntrack.GREMap) { r.ops = append(r.ops, "del "+mapString(m)) }
func (r *fastRec) take() []string            { o := r.ops; r.ops = nil; return o }

func mapString(m conntrack.GREMap) string {
	return fmt.Sprintf("%s/%d->%s/%d out %s>%s/%d->%s", m.Peer, m.OuterID, m.Inside, m.InsideID,
		m.Inside, m.Peer, m.PeerID, m.Public)
}

func wantOps(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("fast path got %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("fast path op %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestFastPathHooks: the fast path gets the calls up when attached, each
// new call once it is established, and loses them on teardown and admin
// delete; counts it reports land on the calls.
func TestFastPathHooks(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	rec := &fastRec{}
	tbl.SetFastPath(rec)
	c10 := "198.51.100.10/16->10.0.0.1/16 out 10.0.0.1>198.51.100.10/32784->203.0.113.1"
	c20 := "198.51.100.10/32->10.0.0.1/32 out 10.0.0.1>198.51.100.10/32800->203.0.113.1"
	got := rec.take()
	if len(got) != 2 || (got[0] != "add "+c10 && got[1] != "add "+c10) {
		t.Fatalf("replay: %q", got)
	}
	// A pending call is not given; its reply makes it so.
	out := f.send(dirOut, ocrq(0x30))
	wantOps(t, rec.take())
	f.send(dirIn, ocrp(0x8030, u16(out, 12), 1))
	wantOps(t, rec.take(), "add 198.51.100.10/48->10.0.0.1/48 out 10.0.0.1>198.51.100.10/32816->203.0.113.1")
	// A refused reply gives nothing.
	out = f.send(dirOut, ocrq(0x40))
	f.send(dirIn, ocrp(0x8040, u16(out, 12), 2))
	wantOps(t, rec.take())
	f.send(dirIn, cdn(0x8010))
	wantOps(t, rec.take(), "del "+c10)
	if err := tbl.Delete("203.0.113.1/198.51.100.10/32", t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	wantOps(t, rec.take(), "del "+c20)

	m := conntrack.GREMap{Peer: pac1, OuterID: 0x30, Inside: cli1, InsideID: 0x30, PeerID: 0x8030, Public: pub1}
	tbl.KernelGRE(m, true, 3, 300, t0.UnixNano())
	tbl.KernelGRE(m, false, 2, 100, t0.UnixNano())
	v := callByID(t, tbl, "203.0.113.1/198.51.100.10/48")
	if v.PacketsIn != 3 || v.BytesIn != 300 || v.PacketsOut != 2 || v.BytesOut != 100 {
		t.Errorf("counters after KernelGRE: %+v", v)
	}
	tbl.SetFastPath(nil)
	f.send(dirIn, cdn(0x8030))
	wantOps(t, rec.take())
}

// TestFastPathWaitsForPolicy: with a policy that reads the PPP
// negotiation, a new call reaches the fast path only once that is over
// (here: the policy is lifted).
func TestFastPathWaitsForPolicy(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, t0.UnixNano())
	rec := &fastRec{}
	tbl.SetFastPath(rec)
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	f.pnsCall(0x10, 0x8010)
	tbl.PromoteFastPath()
	wantOps(t, rec.take())
	tbl.SetPolicy(nil, t0.UnixNano())
	tbl.PromoteFastPath()
	wantOps(t, rec.take(), "add 198.51.100.10/16->10.0.0.1/16 out 10.0.0.1>198.51.100.10/32784->203.0.113.1")
	tbl.PromoteFastPath()
	wantOps(t, rec.take())
}
