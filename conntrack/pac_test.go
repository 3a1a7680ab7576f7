package conntrack_test

import (
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
)

// A PAC inside behind a port-forward: an outside client's OCRQ is pending
// by its own ID until the PAC answers; the PAC's own IDs get outer IDs
// going out and are restored coming in.
func TestPACInsideCall(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	// An inside client already uses outer ID 0x0040 towards rcli1, so the
	// PAC's own 0x0040 must be rewritten (outer IDs are unique per peer).
	x := pnsFlow(t, tbl, res, cli1, 40001, rcli1)
	x.start()
	x.pnsCall(0x0040, 0x1111)

	f := pacFlow(t, tbl, res, srv1, rcli1, 50000)
	f.start() // SYN from outside, SCCRQ in, SCCRP out

	f.send(dirIn, ocrq(0x0777))
	v := callByID(t, tbl, "203.0.113.1/192.0.2.50/pending-1911")
	if v.State != "pending" || v.Role != "pac-inside" || v.PeerCallID != 0x0777 || v.InsideAddr != "10.0.1.1" {
		t.Fatalf("pending row %+v", v)
	}
	if f.last.Modified {
		t.Errorf("inbound OCRQ modified")
	}

	out := f.send(dirOut, ocrp(0x0040, 0x0777, 1))
	if got := u16(out, 12); got != 0x0041 {
		t.Fatalf("OCRP Call ID %#04x, want 0x0041", got)
	}
	if got := u16(out, 14); got != 0x0777 || out[16] != 1 {
		t.Fatalf("OCRP @14 %#04x result %d", got, out[16])
	}
	want := []string{"203.0.113.1/192.0.2.50/64", "203.0.113.1/192.0.2.50/65"}
	if got := callIDs(tbl); !equalStrings(got, want) {
		t.Fatalf("calls %v, want %v (the pending row replaced)", got, want)
	}
	v = callByID(t, tbl, "203.0.113.1/192.0.2.50/65")
	if v.State != "established" || v.Role != "pac-inside" || v.InsideCallID != 0x0040 || v.OuterCallID != 0x0041 || v.PeerCallID != 0x0777 {
		t.Errorf("established row %+v", v)
	}
	if v.Created != t0 {
		t.Errorf("created %v, want the request's time %v", v.Created, t0)
	}
	if a, id, vd := tbl.GREIn(rcli1, pub1, 0x0041, 10, f.now); vd != conntrack.GREForward || a != srv1 || id != 0x0040 {
		t.Errorf("GREIn: %v %#x %v", a, id, vd)
	}
	if p, vd := tbl.GREOut(srv1, rcli1, 0x0777, 10, f.now); vd != conntrack.GREForward || p != pub1 {
		t.Errorf("GREOut: %v %v", p, vd)
	}

	// SLI from the client names the PAC's ID: restored.
	in := f.send(dirIn, sli(0x0041))
	if got := u16(in, 12); got != 0x0040 {
		t.Errorf("SLI restored to %#04x", got)
	}

	// An incoming call: ICRQ out allocates, ICRP in restores @14 and establishes.
	out = f.send(dirOut, icrq(0x0040+1))
	icrqOuter := u16(out, 12)
	if icrqOuter != 0x0042 {
		t.Errorf("ICRQ Call ID %#04x, want 0x0042", icrqOuter)
	}
	in = f.send(dirIn, icrp(0x0888, icrqOuter, 1))
	if got := u16(in, 14); got != 0x0041 || in[16] != 1 {
		t.Errorf("ICRP @14 restored to %#04x result %d", got, in[16])
	}
	if got := u16(in, 12); got != 0x0888 {
		t.Errorf("ICRP @12 (the client's own) changed: %#04x", got)
	}
	v = callByID(t, tbl, "203.0.113.1/192.0.2.50/66")
	if v.State != "established" || v.InsideCallID != 0x0041 || v.PeerCallID != 0x0888 {
		t.Errorf("incoming call row %+v", v)
	}
	// ICCN out carries the client's ID: unchanged.
	out = f.send(dirOut, iccn(0x0888))
	if u16(out, 12) != 0x0888 || f.last.Modified {
		t.Errorf("ICCN out rewritten")
	}

	// CDN out carries the PAC's own ID: rewritten; the call ends.
	out = f.send(dirOut, cdn(0x0040))
	if got := u16(out, 12); got != 0x0041 {
		t.Errorf("CDN Call ID %#04x, want 0x0041", got)
	}
	if out[14] != 3 {
		t.Errorf("CDN result changed")
	}
	if _, _, vd := tbl.GREIn(rcli1, pub1, 0x0041, 10, f.now); vd != conntrack.GREUnknown {
		t.Errorf("GREIn after CDN: %v", vd)
	}
	if _, vd := tbl.GREOut(srv1, rcli1, 0x0777, 10, f.now); vd != conntrack.GREUnknown {
		t.Errorf("GREOut after CDN: %v", vd)
	}
	if a, _, vd := tbl.GREIn(rcli1, pub1, 0x0042, 10, f.now); vd != conntrack.GREForward || a != srv1 {
		t.Errorf("GREIn of the other call: %v", vd)
	}
	wantStats(t, tbl, map[string]uint64{"calls_set_up": 3, "calls_ended": 1, "calls_active": 2, "calls_pending": 0})
}

// An outside client's OCRQ answered with a failure leaves nothing.
func TestPACInsideCallFailed(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := pacFlow(t, tbl, &fakeResolver{}, srv1, rcli1, 50000)
	f.start()
	f.send(dirIn, ocrq(9))
	out := f.send(dirOut, ocrp(3, 9, 4))
	if out[16] != 4 {
		t.Errorf("failure result changed to %d", out[16])
	}
	if ids := callIDs(tbl); len(ids) != 0 {
		t.Errorf("calls after a failed OCRP: %v", ids)
	}
	if s := tbl.Sizes(); s.ByOuter+s.Buckets+s.ByOut+s.Pending+s.Active != 0 {
		t.Errorf("sizes %+v", s)
	}
}

// Two outside clients of the same PAC may use the same Call ID: they are
// different peers, so the PAC's IDs may repeat as outer IDs.
func TestPACInsideTwoClients(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	for _, c := range []conntrack.Addr{rcli1, rcli2} {
		f := pacFlow(t, tbl, res, srv1, c, 50000)
		f.start()
		f.send(dirIn, ocrq(1))
		out := f.send(dirOut, ocrp(0x80, 1, 1))
		if got := u16(out, 12); got != 0x80 {
			t.Errorf("client %v: outer %#04x, want 0x80", c, got)
		}
	}
	if _, _, vd := tbl.GREIn(rcli2, pub1, 0x80, 1, t0.UnixNano()); vd != conntrack.GREForward {
		t.Errorf("GREIn: %v", vd)
	}
	// The inside PAC's GRE out is told apart by the peer.
	for _, c := range []conntrack.Addr{rcli1, rcli2} {
		if _, vd := tbl.GREOut(srv1, c, 1, 1, t0.UnixNano()); vd != conntrack.GREForward {
			t.Errorf("GREOut to %v: %v", c, vd)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
