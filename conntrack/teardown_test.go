package conntrack_test

import (
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// twoCalls sets up a connection from cli1 with calls 0x10 and 0x20 to pac1.
func twoCalls(t *testing.T, tbl *conntrack.Table) *flow {
	t.Helper()
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	f.pnsCall(0x10, 0x8010)
	f.pnsCall(0x20, 0x8020)
	return f
}

func greIn(tbl *conntrack.Table, outer uint16) conntrack.GREVerdict {
	_, _, v := tbl.GREIn(pac1, pub1, outer, 1, t0.UnixNano())
	return v
}

func greOut(tbl *conntrack.Table, pacID uint16) conntrack.GREVerdict {
	_, v := tbl.GREOut(cli1, pac1, pacID, 1, t0.UnixNano())
	return v
}

func states(tbl *conntrack.Table) map[uint16]string {
	m := map[uint16]string{}
	for _, v := range rows(tbl) {
		m[v.OuterCallID] = v.State
	}
	return m
}

func TestTeardownCDN(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	f.send(dirIn, cdn(0x8010))
	if v := greIn(tbl, 0x10); v != conntrack.GREUnknown {
		t.Errorf("GREIn after CDN: %v", v)
	}
	if v := greOut(tbl, 0x8010); v != conntrack.GREUnknown {
		t.Errorf("GREOut after CDN: %v", v)
	}
	if v := greIn(tbl, 0x20); v != conntrack.GREForward {
		t.Errorf("other call's GREIn: %v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 1, "calls_active": 1})
	// The ID is free again: a new call takes it.
	if o := f.pnsCall(0x10, 0x8011); o != 0x10 {
		t.Errorf("new call after CDN: outer %#04x", o)
	}
}

func TestTeardownCCRQThenCDN(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	f.send(dirOut, ccrq(0x20))
	if s := states(tbl); s[0x20] != "closing" || s[0x10] != "established" {
		t.Errorf("after CCRQ: %v", s)
	}
	if v := greIn(tbl, 0x20); v != conntrack.GREForward {
		t.Errorf("a closing call's GRE is still forwarded: %v", v)
	}
	f.send(dirIn, cdn(0x8020))
	if s := states(tbl); len(s) != 1 || s[0x10] != "established" {
		t.Errorf("after CDN: %v", s)
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 1})
}

func TestTeardownStopControlConnection(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	f.send(dirOut, stopRQ())
	if s := states(tbl); s[0x10] != "closing" || s[0x20] != "closing" {
		t.Errorf("after StopCCRQ: %v", s)
	}
	f.send(dirIn, stopRP())
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls after StopCCRP: %d", n)
	}
	if greIn(tbl, 0x10) != conntrack.GREUnknown || greOut(tbl, 0x8020) != conntrack.GREUnknown {
		t.Errorf("GRE after StopCCRP still mapped")
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 2, "control_conns_closed": 1, "control_conns_active": 1})
	lingerThenGone(t, tbl, f.now)
}

// lingerThenGone checks that the ended connection stays for CloseLinger,
// then goes, leaving the table empty.
func lingerThenGone(t *testing.T, tbl *conntrack.Table, ended int64) {
	t.Helper()
	linger := tbl.Limits().CloseLinger
	tbl.Expire(ended + int64(linger-time.Nanosecond))
	if n := tbl.Sizes().Conns; n != 1 {
		t.Errorf("connection gone before CloseLinger: %d", n)
	}
	tbl.Expire(ended + int64(linger))
	wantEmpty(t, tbl)
	wantStats(t, tbl, map[string]uint64{"control_conns_active": 0, "control_conns_closed": 1})
}

func TestTeardownRST(t *testing.T) {
	for _, dir := range []int{dirOut, dirIn} {
		tbl := newTable(conntrack.Limits{})
		f := twoCalls(t, tbl)
		f.rst(dir)
		if n := len(rows(tbl)); n != 0 {
			t.Errorf("dir %d: calls after RST: %d", dir, n)
		}
		if greIn(tbl, 0x20) != conntrack.GREUnknown {
			t.Errorf("dir %d: GRE after RST", dir)
		}
		wantStats(t, tbl, map[string]uint64{"calls_ended": 2, "control_conns_closed": 1})
		lingerThenGone(t, tbl, f.now)
	}
}

// One FIN is a half-close: calls are closing and their GRE still passes;
// the other end's CDN still ends a call; the second FIN ends the rest.
func TestTeardownHalfClose(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	f.fin(dirOut)
	if s := states(tbl); s[0x10] != "closing" || s[0x20] != "closing" {
		t.Errorf("after one FIN: %v", s)
	}
	if greIn(tbl, 0x10) != conntrack.GREForward || greOut(tbl, 0x8020) != conntrack.GREForward {
		t.Errorf("GRE of half-closed calls not forwarded")
	}
	// nDPI__pptp.pcap: the PNS retransmits after its FIN, the PAC's CDN
	// comes after it.
	f.send(dirIn, cdn(0x8010))
	if s := states(tbl); len(s) != 1 {
		t.Errorf("after CDN on a half-closed connection: %v", s)
	}
	wantStats(t, tbl, map[string]uint64{"control_conns_closed": 0, "calls_active": 1})
	f.fin(dirIn)
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls after both FINs: %d", n)
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 2, "control_conns_closed": 1})
	lingerThenGone(t, tbl, f.now)
}

// A failed OCRP leaves nothing and frees the outer ID.
func TestTeardownFailedOCRP(t *testing.T) {
	res := &fakeResolver{}
	tbl, _, b := twoPNS(t, res)
	out := b.send(dirOut, ocrq(5))
	if u16(out, 12) != 6 {
		t.Fatalf("outer %#04x", u16(out, 12))
	}
	in := b.send(dirIn, ocrp(0x200, 6, 3)) // 3: Busy
	if u16(in, 14) != 5 || in[16] != 3 {
		t.Errorf("failed OCRP: @14 %#04x result %d", u16(in, 14), in[16])
	}
	if _, _, v := tbl.GREIn(pac1, pub1, 6, 1, b.now); v != conntrack.GREUnknown {
		t.Errorf("GREIn of a failed call: %v", v)
	}
	if len(rows(tbl)) != 1 {
		t.Errorf("calls: %v", callIDs(tbl))
	}
	wantStats(t, tbl, map[string]uint64{"calls_failed": 1, "calls_pending": 0, "calls_active": 1, "calls_set_up": 1})
	c := pnsFlow(t, tbl, res, cli3, 40003, pac1)
	c.start()
	if o := c.pnsCall(5, 0x300); o != 6 {
		t.Errorf("the failed call's outer ID not freed: got %#04x, want 6", o)
	}
}

// Retransmitted bytes get the rewrite their first copy got, also after the
// message ended the call and the connection ended.
func TestTeardownRetransmittedCDN(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	x := pnsFlow(t, tbl, res, cli1, 40001, rcli1)
	x.start()
	x.pnsCall(0x0040, 0x1111) // outer 0x0040 towards rcli1 is taken
	f := pacFlow(t, tbl, res, srv1, rcli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x0777))
	if o := u16(f.send(dirOut, ocrp(0x0040, 0x0777, 1)), 12); o != 0x0041 {
		t.Fatalf("outer %#04x", o)
	}
	seq := f.next[dirOut]
	orig := cdn(0x0040)
	first := f.send(dirOut, orig)
	if u16(first, 12) != 0x0041 {
		t.Fatalf("CDN rewritten to %#04x", u16(first, 12))
	}
	again := f.resend(dirOut, seq, orig)
	if string(again) != string(first) || !f.last.Modified {
		t.Errorf("retransmitted CDN: %#04x, want %#04x", u16(again, 12), u16(first, 12))
	}
	// A retransmission that overlaps new bytes: the old part replayed,
	// the new part walked.
	seq2 := f.next[dirOut]
	both := cat(orig, echoRQ())
	out := f.resend(dirOut, seq, both)
	if u16(out, 12) != 0x0041 {
		t.Errorf("overlapping retransmission: %#04x", u16(out, 12))
	}
	f.next[dirOut] = seq2 + uint32(len(echoRQ()))
	// The connection ends; within CloseLinger retransmissions are still
	// rewritten (the client's ACK of the CDN got lost).
	f.ackLag[dirIn] = &seq
	f.fin(dirOut)
	f.fin(dirIn)
	if tbl.Sizes().Conns != 2 {
		t.Fatalf("conns %d", tbl.Sizes().Conns)
	}
	wantStats(t, tbl, map[string]uint64{"control_conns_closed": 1})
	again = f.resend(dirOut, seq, orig)
	if u16(again, 12) != 0x0041 {
		t.Errorf("retransmitted CDN after the end: %#04x", u16(again, 12))
	}
	if n := tbl.Stats()["control_retransmits"]; n != 3 {
		t.Errorf("control_retransmits = %d, want 3", n)
	}
	// A retransmitted OCRQ does not allocate again.
	out1 := x.send(dirOut, ocrq(0x50))
	before := len(rows(tbl))
	out2 := x.resend(dirOut, x.next[dirOut]-uint32(len(out1)), ocrq(0x50))
	if string(out1) != string(out2) || len(rows(tbl)) != before {
		t.Errorf("retransmitted OCRQ: %#04x vs %#04x, calls %d -> %d", u16(out1, 12), u16(out2, 12), before, len(rows(tbl)))
	}
}

// A segment beyond a gap is dropped and counted; the stream goes on when
// the missing bytes come.
func TestControlGap(t *testing.T) {
	tbl, _, b := twoPNS(t, &fakeResolver{})
	req := ocrq(5)
	seq := b.next[dirOut]
	b.next[dirOut] += 20
	b.segment(dirOut, false, false, false, req[20:])
	if !b.last.Drop || b.last.Modified {
		t.Errorf("segment beyond a gap: %+v", b.last)
	}
	wantStats(t, tbl, map[string]uint64{"control_out_of_order": 1})
	b.next[dirOut] = seq
	out := b.send(dirOut, req[:20])
	if u16(out, 12) != 6 {
		t.Errorf("outer %#04x", u16(out, 12))
	}
	b.send(dirOut, req[20:])
	in := b.send(dirIn, ocrp(7, 6, 1))
	if u16(in, 14) != 5 {
		t.Errorf("restored %#04x", u16(in, 14))
	}
}

// Framing errors are counted and the stream resynchronises on the next
// header.
func TestControlMalformed(t *testing.T) {
	tbl, _, b := twoPNS(t, &fakeResolver{})
	bad := ocrq(5)
	put16(bad, 0, 100) // wrong length for an OCRQ
	out := b.send(dirOut, cat(bad, ocrq(5)))
	if u16(out, 12) != 5 {
		t.Errorf("malformed message rewritten")
	}
	if u16(out, 168+12) != 6 {
		t.Errorf("message after the malformed one: %#04x, want 6", u16(out, 168+12))
	}
	wantStats(t, tbl, map[string]uint64{"malformed": 1})
}

// A new connection on the same ports after the old one ended starts afresh.
func TestConnectionReuse(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	f.start()
	f.pnsCall(5, 0x100)
	f.fin(dirOut)
	f.fin(dirIn)
	g := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	g.next = [2]uint32{7000, 9000}
	g.start()
	if o := g.pnsCall(5, 0x101); o != 5 {
		t.Errorf("outer %#04x", o)
	}
	if s := tbl.Sizes(); s.Conns != 1 || s.ByOuter != 1 {
		t.Errorf("sizes %+v", s)
	}
	wantStats(t, tbl, map[string]uint64{"control_conns_opened": 2, "control_conns_closed": 1})
}

// A call whose setup completes after the connection started closing (one
// FIN or StopCCRQ seen) is closing, not established.
func TestSetUpWhileClosing(t *testing.T) {
	for name, closeIt := range map[string]func(f *flow){
		"fin":      func(f *flow) { f.fin(dirOut) },
		"stopccrq": func(f *flow) { f.send(dirIn, stopRQ()) },
	} {
		tbl := newTable(conntrack.Limits{})
		f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
		f.start()
		f.send(dirOut, ocrq(0x10))
		closeIt(f)
		f.send(dirIn, ocrp(0x8010, 0x10, 1))
		if s := states(tbl); s[0x10] != "closing" {
			t.Errorf("%s: call set up on a closing connection is %q", name, s[0x10])
		}
		if greIn(tbl, 0x10) != conntrack.GREForward {
			t.Errorf("%s: GRE of the closing call not forwarded", name)
		}
		wantStats(t, tbl, map[string]uint64{"calls_set_up": 1, "calls_active": 1})
	}
}

// PAC inside: the outside client's CCRQ names its own Call ID; the call
// is closing until the PAC's CDN.
func TestPACInsideCCRQ(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := pacFlow(t, tbl, &fakeResolver{}, srv1, rcli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x0777))
	f.send(dirOut, ocrp(0x0040, 0x0777, 1))
	in := f.send(dirIn, ccrq(0x0777))
	if u16(in, 12) != 0x0777 || f.last.Modified {
		t.Errorf("inbound CCRQ rewritten")
	}
	if v := callByID(t, tbl, callName(pub1, rcli1, 0x40)); v.State != "closing" {
		t.Errorf("after CCRQ: %q", v.State)
	}
	f.send(dirOut, cdn(0x0040))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls %v", callIDs(tbl))
	}
}
