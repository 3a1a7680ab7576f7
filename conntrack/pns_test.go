package conntrack_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pptpgw/pptpgw/conntrack"
)

// A client inside dials a PAC outside: its OCRQ gets an outer Call ID, the
// OCRP's Peer Call ID is restored, and GRE is translated both ways.
func TestPNSInsideCall(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	f.start()
	if !f.last.Tracked {
		t.Fatalf("SCCRP not tracked")
	}
	if n := len(rows(tbl)); n != 0 {
		t.Fatalf("calls after SCCRP: %d", n)
	}

	out := f.send(dirOut, ocrq(0))
	if got := u16(out, 12); got != 0 {
		t.Fatalf("OCRQ Call ID %#04x, want the inside ID 0 kept (it is free)", got)
	}
	if f.last.Modified {
		t.Errorf("OCRQ with a free ID reported modified")
	}
	v := callByID(t, tbl, callName(pub1, pac1, 0))
	if v.State != "pending" {
		t.Errorf("after OCRQ state %q, want pending", v.State)
	}
	if a, _, vd := tbl.GREIn(pac1, pub1, 0, 100, f.now); vd != conntrack.GRERefused {
		t.Errorf("GRE in for a pending call: %v %v, want GRERefused", a, vd)
	}
	wantStats(t, tbl, map[string]uint64{"calls_pending": 1, "calls_active": 0})

	in := f.send(dirIn, ocrp(0x4711, 0, 1))
	if got := u16(in, 14); got != 0 || in[16] != 1 {
		t.Fatalf("OCRP @14 %#04x result %d", got, in[16])
	}

	// A second client with the same inside Call ID gets another outer ID.
	g := pnsFlow(t, tbl, res, cli2, 40002, pac1)
	g.now = f.now
	g.start()
	out = g.send(dirOut, ocrq(0))
	if got := u16(out, 12); got != 1 {
		t.Fatalf("second client's OCRQ Call ID %#04x, want 1", got)
	}
	if !g.last.Modified {
		t.Errorf("rewritten OCRQ not reported modified")
	}
	in = g.send(dirIn, ocrp(0x0815, 1, 1))
	if got := u16(in, 14); got != 0 {
		t.Fatalf("second OCRP @14 restored to %#04x, want 0", got)
	}
	if !g.last.Modified {
		t.Errorf("restored OCRP not reported modified")
	}
	if got := u16(in, 12); got != 0x0815 {
		t.Errorf("OCRP @12 (the PAC's own ID) changed to %#04x", got)
	}

	// GRE.
	now := f.now + int64(time.Second)
	for _, c := range []struct {
		outer  uint16
		inside conntrack.Addr
		pacID  uint16
	}{{0, cli1, 0x4711}, {1, cli2, 0x0815}} {
		a, id, vd := tbl.GREIn(pac1, pub1, c.outer, 120, now)
		if vd != conntrack.GREForward || a != c.inside || id != 0 {
			t.Errorf("GREIn(outer %d) = %v %d %v, want %v 0 GREForward", c.outer, a, id, vd, c.inside)
		}
		p, vd := tbl.GREOut(c.inside, pac1, c.pacID, 80, now)
		if vd != conntrack.GREForward || p != pub1 {
			t.Errorf("GREOut(%v) = %v %v, want %v GREForward", c.inside, p, vd, pub1)
		}
	}
	// Wrong public address, unknown ID, unknown peer, unknown peer ID.
	if _, _, vd := tbl.GREIn(pac1, pub2, 0, 1, now); vd != conntrack.GREUnknown {
		t.Errorf("GREIn to another public address: %v", vd)
	}
	if _, _, vd := tbl.GREIn(pac1, pub1, 2, 1, now); vd != conntrack.GREUnknown {
		t.Errorf("GREIn unknown ID: %v", vd)
	}
	if _, _, vd := tbl.GREIn(pac2, pub1, 0, 1, now); vd != conntrack.GREUnknown {
		t.Errorf("GREIn unknown peer: %v", vd)
	}
	if _, vd := tbl.GREOut(cli1, pac1, 0x0815, 1, now); vd != conntrack.GREUnknown {
		t.Errorf("GREOut with another client's peer ID: %v", vd)
	}
	if _, vd := tbl.GREOut(cli3, pac1, 0x4711, 1, now); vd != conntrack.GREUnknown {
		t.Errorf("GREOut from an unknown client: %v", vd)
	}

	want := []callRow{{
		ID: "203.0.113.1/198.51.100.10/0", State: "established", Role: "pns-inside",
		InsideAddr: "10.0.0.1", InsideCallID: 0, PublicAddr: "203.0.113.1", OuterCallID: 0,
		PeerAddr: "198.51.100.10", PeerCallID: 0x4711,
		Created: t0, LastSeen: time.Unix(0, now).UTC(),
		PacketsIn: 1, PacketsOut: 1, BytesIn: 120, BytesOut: 80,
	}, {
		ID: "203.0.113.1/198.51.100.10/1", State: "established", Role: "pns-inside",
		InsideAddr: "10.0.0.2", InsideCallID: 0, PublicAddr: "203.0.113.1", OuterCallID: 1,
		PeerAddr: "198.51.100.10", PeerCallID: 0x0815,
		Created: t0, LastSeen: time.Unix(0, now).UTC(),
		PacketsIn: 1, PacketsOut: 1, BytesIn: 120, BytesOut: 80,
	}}
	if diff := cmp.Diff(want, rows(tbl)); diff != "" {
		t.Errorf("Calls() (-want +got):\n%s", diff)
	}
	wantStats(t, tbl, map[string]uint64{
		"control_messages":     8, // 2 x (SCCRQ, SCCRP, OCRQ, OCRP)
		"rewrites":             2, // the second OCRQ and its OCRP
		"malformed":            0,
		"calls_set_up":         2,
		"calls_ended":          0,
		"calls_refused":        0,
		"calls_failed":         0,
		"calls_active":         2,
		"calls_pending":        0,
		"control_conns_opened": 2,
		"control_conns_active": 2,
		"control_conns_closed": 0,
	})
}

// Incoming calls with the client inside: ICRQ in is pending by the PAC's
// ID, ICRP out allocates the client's outer ID, ICCN/WEN/SLI in restore it.
func TestPNSInsideIncomingCall(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.pnsCall(0x0100, 0x9000) // takes outer 0x0100
	b := pnsFlow(t, tbl, res, cli2, 40002, pac1)
	b.start()

	b.send(dirIn, icrq(0x9001))
	if v := callByID(t, tbl, "203.0.113.1/198.51.100.10/pending-36865"); v.State != "pending" || v.Role != "pns-inside" {
		t.Fatalf("pending incoming call: %+v", v)
	}
	out := b.send(dirOut, icrp(0x0100, 0x9001, 1))
	if got := u16(out, 12); got != 0x0101 {
		t.Fatalf("ICRP Call ID %#04x, want 0x0101", got)
	}
	if got := u16(out, 14); got != 0x9001 || out[16] != 1 {
		t.Fatalf("ICRP @14 %#04x result %d", got, out[16])
	}
	if ids := callIDs(tbl); !cmp.Equal(ids, []string{"203.0.113.1/198.51.100.10/256", "203.0.113.1/198.51.100.10/257"}) {
		t.Fatalf("calls %v", ids)
	}
	v := callByID(t, tbl, "203.0.113.1/198.51.100.10/257")
	if v.State != "established" || v.InsideCallID != 0x0100 || v.PeerCallID != 0x9001 || v.InsideAddr != "10.0.0.2" {
		t.Errorf("incoming call row %+v", v)
	}
	for _, m := range [][]byte{iccn(0x0101), wen(0x0101), sli(0x0101)} {
		in := b.send(dirIn, m)
		if got := u16(in, 12); got != 0x0100 {
			t.Errorf("%x: peer Call ID restored to %#04x, want 0x0100", m[8:10], got)
		}
	}
	if a, id, vd := tbl.GREIn(pac1, pub1, 0x0101, 10, b.now); vd != conntrack.GREForward || a != cli2 || id != 0x0100 {
		t.Errorf("GREIn: %v %#x %v", a, id, vd)
	}
	if p, vd := tbl.GREOut(cli2, pac1, 0x9001, 10, b.now); vd != conntrack.GREForward || p != pub1 {
		t.Errorf("GREOut: %v %v", p, vd)
	}
	// CCRQ out carries the client's own ID: rewritten; the call is closing.
	out = b.send(dirOut, ccrq(0x0100))
	if got := u16(out, 12); got != 0x0101 {
		t.Errorf("CCRQ Call ID %#04x, want 0x0101", got)
	}
	if v := callByID(t, tbl, "203.0.113.1/198.51.100.10/257"); v.State != "closing" {
		t.Errorf("after CCRQ: %q", v.State)
	}
	// CDN in carries the PAC's ID: unchanged; the call ends.
	in := b.send(dirIn, cdn(0x9001))
	if got := u16(in, 12); got != 0x9001 || b.last.Modified {
		t.Errorf("CDN Call ID %#04x modified %v", got, b.last.Modified)
	}
	if _, _, vd := tbl.GREIn(pac1, pub1, 0x0101, 10, b.now); vd != conntrack.GREUnknown {
		t.Errorf("GREIn after CDN: %v", vd)
	}
	// The other client's call is untouched.
	if a, id, vd := tbl.GREIn(pac1, pub1, 0x0100, 10, b.now); vd != conntrack.GREForward || a != cli1 || id != 0x0100 {
		t.Errorf("GREIn other call: %v %#x %v", a, id, vd)
	}
}

// An ICRP that refuses the call (result != 1) leaves nothing.
func TestPNSInsideIncomingRefusedByClient(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	f.send(dirIn, icrq(7))
	f.send(dirOut, icrp(5, 7, 3))
	if ids := callIDs(tbl); len(ids) != 0 {
		t.Errorf("calls after a refused ICRP: %v", ids)
	}
	wantStats(t, tbl, map[string]uint64{"calls_failed": 1, "calls_pending": 0, "calls_active": 0})
	if s := tbl.Sizes(); s.ByOuter != 0 || s.Buckets != 0 || s.ByOut != 0 {
		t.Errorf("sizes %+v", s)
	}
}

// A connection the resolver does not know yet passes untouched, and the
// next segment asks again.
func TestResolverNotReady(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{refuse: true}
	f := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	f.segment(dirOut, true, false, false, nil)
	if f.last.Tracked {
		t.Fatalf("tracked without a resolver answer")
	}
	res.refuse = false
	f.segment(dirIn, true, false, false, nil)
	if !f.last.Tracked || f.last.Outbound {
		t.Fatalf("SYN-ACK: %+v", f.last)
	}
	// An RST or bare FIN of an unknown connection creates nothing.
	g := pnsFlow(t, tbl, res, cli2, 40002, pac1)
	g.rst(dirOut)
	g.fin(dirIn)
	if g.last.Tracked || tbl.Sizes().Conns != 1 {
		t.Errorf("RST/FIN created a connection: %+v", tbl.Sizes())
	}
}

// Identity connections: the kernel does not NAT them, so IDs pass
// unchanged and their GRE passes untouched.
func TestIdentityConnection(t *testing.T) {
	tbl, _, b := twoPNS(t, &fakeResolver{identity: map[conntrack.Addr]bool{cli2: true}})
	out := b.send(dirOut, ocrq(5)) // the same inside ID: kept on an identity connection
	if got := u16(out, 12); got != 5 || b.last.Modified {
		t.Fatalf("identity OCRQ Call ID %#04x modified %v", got, b.last.Modified)
	}
	in := b.send(dirIn, ocrp(0x200, 5, 1))
	if got := u16(in, 14); got != 5 || b.last.Modified {
		t.Fatalf("identity OCRP @14 %#04x modified %v", got, b.last.Modified)
	}
	if p, vd := tbl.GREOut(cli2, pac1, 0x200, 10, b.now); vd != conntrack.GREIdentity {
		t.Errorf("identity GREOut: %v %v, want GREIdentity", p, vd)
	}
	if a, id, vd := tbl.GREIn(pac1, pub1, 5, 10, b.now); vd != conntrack.GREForward || a != cli1 || id != 5 {
		t.Errorf("NATed call's GREIn: %v %d %v", a, id, vd)
	}
	if _, vd := tbl.GREOut(cli1, pac1, 0x100, 10, b.now); vd != conntrack.GREForward {
		t.Errorf("NATed call's GREOut: %v", vd)
	}
	// The identity call is listed, and an identity CCRQ/CDN pass unchanged.
	var found bool
	for _, v := range rows(tbl) {
		if v.InsideAddr == "10.0.0.2" {
			found = true
			if v.State != "established" || v.InsideCallID != 5 || v.OuterCallID != 5 || v.PeerCallID != 0x200 {
				t.Errorf("identity row %+v", v)
			}
		}
	}
	if !found {
		t.Fatalf("identity call not listed: %v", callIDs(tbl))
	}
	out = b.send(dirOut, ccrq(5))
	if u16(out, 12) != 5 || b.last.Modified {
		t.Errorf("identity CCRQ rewritten")
	}
	b.send(dirIn, cdn(0x200))
	if _, vd := tbl.GREOut(cli2, pac1, 0x200, 10, b.now); vd != conntrack.GREUnknown {
		t.Errorf("identity GREOut after CDN: %v", vd)
	}
	wantStats(t, tbl, map[string]uint64{"calls_set_up": 2, "calls_ended": 1, "calls_active": 1})
}
