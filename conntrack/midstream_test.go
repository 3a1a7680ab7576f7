package conntrack_test

import (
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
)

// midFlow is a connection the table first sees in the middle (the daemon
// started while it was up): no SYN, arbitrary sequence numbers.
func midFlow(t *testing.T, tbl *conntrack.Table, inside, outside conntrack.Endpoint) *flow {
	f := newFlow(t, tbl, &fakeResolver{}, inside, outside)
	f.next = [2]uint32{0x7000_0000, 0x1234_5678}
	f.syn = [2]bool{true, true}
	return f
}

func TestMidStreamPickUp(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := midFlow(t, tbl, ep(cli1, 40001), ep(pac1, 1723))
	// The first segment starts in the middle of some message; the SLI
	// after it names the client's Call ID 0x3344.
	junk := sli(0x9999)[5:]
	in := f.send(dirIn, cat(junk, sli(0x3344)))
	if !f.last.Tracked || f.last.Modified {
		t.Fatalf("first segment: %+v", f.last)
	}
	if u16(in, len(junk)+12) != 0x3344 {
		t.Fatalf("picked-up ID changed")
	}
	v := callByID(t, tbl, callName(pub1, pac1, 0x3344))
	if !v.PickedUp || v.State != "established" || v.Role != "pns-inside" || v.InsideCallID != 0x3344 || v.OuterCallID != 0x3344 || v.InsideAddr != "10.0.0.1" {
		t.Errorf("picked-up row %+v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_picked_up": 1, "calls_active": 1, "calls_set_up": 0})
	if a, id, vd := tbl.GREIn(pac1, pub1, 0x3344, 10, f.now); vd != conntrack.GREForward || a != cli1 || id != 0x3344 {
		t.Errorf("GREIn: %v %#04x %v", a, id, vd)
	}
	// The first GRE the client sends binds the PAC's Call ID.
	if p, vd := tbl.GREOut(cli1, pac1, 0xABCD, 10, f.now); vd != conntrack.GREForward || p != pub1 {
		t.Errorf("GREOut: %v %v", p, vd)
	}
	if v := callByID(t, tbl, callName(pub1, pac1, 0x3344)); v.PeerCallID != 0xABCD {
		t.Errorf("peer Call ID not bound: %+v", v)
	}
	if s := tbl.Sizes(); s.Unbound != 0 || s.ByOut != 1 {
		t.Errorf("sizes %+v", s)
	}
	// Other clients' GRE does not bind it.
	if _, vd := tbl.GREOut(cli2, pac1, 0xABCD, 10, f.now); vd != conntrack.GREUnknown {
		t.Errorf("another client's GRE: %v", vd)
	}
	// More SLIs for the same call pick nothing new up.
	f.send(dirIn, sli(0x3344))
	if n := len(rows(tbl)); n != 1 {
		t.Errorf("calls %v", callIDs(tbl))
	}
	// A new call on the picked-up connection is set up as usual: the
	// outbound direction synchronises on its first header too.
	out := f.send(dirOut, ocrq(0x3344))
	if o := u16(out, 12); o != 0x3345 {
		t.Errorf("new call's outer %#04x, want 0x3345", o)
	}
	in = f.send(dirIn, ocrp(0x77, 0x3345, 1))
	if u16(in, 14) != 0x3344 {
		t.Errorf("new call's OCRP @14 %#04x", u16(in, 14))
	}
	// Bound now, the picked-up call ends on its CDN.
	f.send(dirIn, cdn(0xABCD))
	if _, _, vd := tbl.GREIn(pac1, pub1, 0x3344, 10, f.now); vd != conntrack.GREUnknown {
		t.Errorf("GREIn after CDN: %v", vd)
	}
	f.rst(dirIn)
	tbl.Expire(f.now + int64(conntrack.DefaultCloseLinger))
	wantEmpty(t, tbl)
}

// Two picked-up calls of one client to one PAC: the client's GRE cannot be
// told apart, so it binds neither; the inbound GRE still passes.
func TestMidStreamAmbiguous(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := midFlow(t, tbl, ep(cli1, 40001), ep(pac1, 1723))
	f.send(dirIn, cat(sli(0x10), wen(0x20)))
	if n := tbl.Stats()["calls_picked_up"]; n != 2 {
		t.Fatalf("picked up %d", n)
	}
	if _, vd := tbl.GREOut(cli1, pac1, 0x99, 10, f.now); vd != conntrack.GREUnknown {
		t.Errorf("ambiguous GREOut: %v", vd)
	}
	for _, id := range []uint16{0x10, 0x20} {
		if _, _, vd := tbl.GREIn(pac1, pub1, id, 10, f.now); vd != conntrack.GREForward {
			t.Errorf("GREIn %#x: %v", id, vd)
		}
	}
	// Unbound picked-up calls go on GRE idle and leave nothing behind.
	tbl.Expire(f.now + int64(conntrack.DefaultGREIdle))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls %v", callIDs(tbl))
	}
	if s := tbl.Sizes(); s.Unbound != 0 || s.ByOuter != 0 || s.Buckets != 0 || s.Active != 0 || s.PerIn != 0 {
		t.Errorf("sizes %+v", s)
	}
}

// A PAC inside, picked up: the outside client's SLI names the PAC's Call
// ID; the role says pac-inside.
func TestMidStreamPACInside(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := midFlow(t, tbl, ep(srv1, 1723), ep(rcli1, 50000))
	f.send(dirIn, sli(0x0500))
	v := callByID(t, tbl, callName(pub1, rcli1, 0x0500))
	if !v.PickedUp || v.Role != "pac-inside" || v.InsideAddr != "10.0.1.1" {
		t.Errorf("row %+v", v)
	}
	if p, vd := tbl.GREOut(srv1, rcli1, 0x0600, 1, f.now); vd != conntrack.GREForward || p != pub1 {
		t.Errorf("GREOut %v %v", p, vd)
	}
}

// Messages naming unknown Call IDs on a connection seen from its SYN pick
// nothing up, nor do the peer's replies or an outbound SLI.
func TestNoPickUpWhenSetupSeen(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	f.send(dirIn, cat(sli(0x10), iccn(0x11), wen(0x12)))
	f.send(dirOut, sli(0x13))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls %v", callIDs(tbl))
	}
	m := midFlow(t, tbl, ep(cli2, 40002), ep(pac1, 1723))
	m.send(dirOut, sli(0x14)) // outbound: names the PAC's ID, not ours
	m.send(dirIn, ocrp(0x15, 0x16, 1))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls %v", callIDs(tbl))
	}
	// An ID already used towards the peer is not picked up twice.
	m.send(dirIn, sli(0x20))
	k := midFlow(t, tbl, ep(cli3, 40003), ep(pac1, 1723))
	k.send(dirIn, sli(0x20))
	if n := len(rows(tbl)); n != 1 {
		t.Errorf("calls %v", callIDs(tbl))
	}
}
