package conntrack_test

import (
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
)

// exhaust builds a table where connection x (cli1 to pac1) has no outer
// ID left for inside high byte 0x00: its bucket 0x00 is full, 0x01..0xFE
// each already name another inside high byte on x, and 0xFF is full.
func exhaust(t *testing.T) (*conntrack.Table, *flow) {
	t.Helper()
	tbl := newTable(bigLimits)
	res := &fakeResolver{}
	x := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	x.start()
	for hi := 0; hi < 0xFF; hi++ {
		x.pnsCall(uint16(hi)<<8, uint16(0x4000+hi))
	}
	fill(t, tbl, res, cli2, pac1, idRange(0x0001, 0x00FF)...)
	fill(t, tbl, res, cli3, pac1, idRange(0xFF00, 0xFFFF)...)
	return tbl, x
}

// An outbound request that can get no outer ID is refused when its reply
// comes back, instead of leaving a call whose ID may be another client's.
func TestExhaustedRequestRefused(t *testing.T) {
	tbl, x := exhaust(t)
	out := x.send(dirOut, ocrq(0x0001))
	wantStats(t, tbl, map[string]uint64{"call_ids_exhausted": 1})
	in := x.send(dirIn, ocrp(0x5000, u16(out, 12), 1))
	if in[16] != 2 {
		t.Errorf("reply to a request with no outer ID: result %d, want 2", in[16])
	}
	wantStats(t, tbl, map[string]uint64{"calls_refused": 1})
	// Other calls go on.
	if a, _, v := tbl.GREIn(pac1, pub1, 0x0001, 1, x.now); v != conntrack.GREForward || a != cli2 {
		t.Errorf("cli2's call disturbed: %v %v", a, v)
	}
	// Once x's bucket has room again, x's calls work again.
	x.send(dirIn, cdn(0x4000)) // ends x's 0x0000
	out = x.send(dirOut, ocrq(0x0002))
	if o := u16(out, 12); o != 0x0000 {
		t.Errorf("after a slot freed: outer %#04x, want 0x0000", o)
	}
	if in := x.send(dirIn, ocrp(0x5001, 0x0000, 1)); in[16] != 1 || u16(in, 14) != 0x0002 {
		t.Errorf("later call: result %d @14 %#04x", in[16], u16(in, 14))
	}
}

// A reply from an inside PAC whose own ID can get no outer ID is refused
// on its way out.
func TestExhaustedReplyRefused(t *testing.T) {
	tbl := newTable(bigLimits)
	res := &fakeResolver{}
	// The inside PAC's connection with the outside client rcli1 uses
	// buckets 0x00..0xFE for as many inside high bytes; 0xFF is full.
	f := pacFlow(t, tbl, res, srv1, rcli1, 50000)
	f.start()
	for hi := 0; hi < 0xFF; hi++ {
		f.send(dirIn, ocrq(uint16(0x1000+hi)))
		if out := f.send(dirOut, ocrp(uint16(hi)<<8, uint16(0x1000+hi), 1)); u16(out, 12) != uint16(hi)<<8 || out[16] != 1 {
			t.Fatalf("call %d: %#04x %d", hi, u16(out, 12), out[16])
		}
	}
	fill(t, tbl, res, cli3, rcli1, idRange(0xFF00, 0xFFFF)...)
	fill(t, tbl, res, cli2, rcli1, idRange(0x0001, 0x00FF)...)
	f.send(dirIn, ocrq(0x2000))
	out := f.send(dirOut, ocrp(0x0001, 0x2000, 1))
	if out[16] != 2 {
		t.Errorf("reply with no outer ID: result %d, want 2", out[16])
	}
	wantStats(t, tbl, map[string]uint64{"call_ids_exhausted": 1})
	if s := tbl.Stats(); s["calls_refused"] != 1 {
		t.Errorf("calls_refused %d", s["calls_refused"])
	}
	if _, v := tbl.GREOut(srv1, rcli1, 0x2000, 1, f.now); v == conntrack.GREForward {
		t.Errorf("GRE of the refused call forwarded")
	}
	// The pending request answered is gone after SetupTimeout at the latest.
	tbl.Expire(f.now + int64(conntrack.DefaultSetupTimeout))
	for _, v := range rows(tbl) {
		if v.State == "pending" {
			t.Errorf("pending left: %+v", v)
		}
	}
}

// A new SYN on a connection that is not known to have ended (the old one's
// FIN or RST was not seen) restarts the stream; a bucket slot reserved for
// a Call ID cut in the middle of the old stream must not leak.
func TestNewSYNMidFieldNoLeak(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	f.start()
	req := ocrq(0x1234)
	f.send(dirOut, req[:13]) // the high byte passed: a slot of bucket 0x12 reserved
	if n := tbl.BucketUse(pac1, 0x12); n != 1 {
		t.Fatalf("reserved %d", n)
	}
	// The client restarts on the same port with a new ISN.
	f.next = [2]uint32{500000, 600000}
	f.syn = [2]bool{}
	f.start()
	f.pnsCall(0x1234, 0x55)
	if n := tbl.BucketUse(pac1, 0x12); n != 1 {
		t.Errorf("bucket 0x12 use %d, want 1 (the call)", n)
	}
	f.rst(dirOut)
	tbl.Expire(f.now + int64(conntrack.DefaultCloseLinger))
	wantEmpty(t, tbl)
}
