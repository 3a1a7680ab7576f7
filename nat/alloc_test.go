package nat_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// The packet path allocates nothing (DESIGN.md "The data path"). GRE
// packets are rewritten in place, so each run starts from a copy of the
// template (copy allocates nothing).

type pathCase struct {
	name   string
	hook   nat.Hook
	tmpl   []byte
	reason nat.Reason
	// next prepares buf for the next run (nil: copy the template back).
	next func(buf []byte)
}

// hotPaths returns the GRE in, GRE out and control steady-state cases on a
// worker whose table holds the two calls of setUp.
func hotPaths(w *nat.Worker) []pathCase {
	_, c2 := setUp(w)
	// Control: the PAC's SLI for call 2 (Peer Call ID 1 restored to 0)
	// and the PNS's Echo-Request, each run the next segment of its stream.
	sli := c2.in(pptpMsg(mSLI, 1))
	echo := c2.out(pptpMsg(mEchoQ, 0, 1))
	// advance returns a next func that sends tmpl's message again as the
	// next n bytes of its stream, each time.
	advance := func(tmpl []byte, n uint32) func([]byte) {
		seq := binary.BigEndian.Uint32(tmpl[24:])
		return func(buf []byte) {
			copy(buf, tmpl)
			binary.BigEndian.PutUint32(buf[24:], seq)
			seq += n
		}
	}
	return []pathCase{
		{name: "GRE in", hook: nat.HookGREIn, reason: nat.ReasonGREIn,
			tmpl: grePkt(pac.Addr(), public, greHdr(1, 7, pppFrame))},
		{name: "GRE out", hook: nat.HookGREOut, reason: nat.ReasonGREOut,
			tmpl: grePkt(client2.Addr(), pac.Addr(), greHdr(pacID2, 7, pppFrame))},
		{name: "control SLI rewrite", hook: nat.HookControl, reason: nat.ReasonControl, tmpl: sli,
			next: advance(sli, 24)},
		{name: "control Echo-Request", hook: nat.HookControl, reason: nat.ReasonControl, tmpl: echo,
			next: advance(echo, 16)},
	}
}

func TestProcessZeroAllocs(t *testing.T) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	for _, c := range hotPaths(w) {
		buf := append([]byte(nil), c.tmpl...)
		run := func() {
			if c.next != nil {
				c.next(buf)
			} else {
				copy(buf, c.tmpl)
			}
			if _, r := w.Process(buf, c.hook, 100); r != c.reason {
				t.Fatalf("%s: reason %v, want %v", c.name, r, c.reason)
			}
		}
		// Warm up past the stream tracker's bounded record buffer.
		for i := 0; i < 300; i++ {
			run()
		}
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", c.name, n)
		}
	}
}

func benchPath(b *testing.B, w *nat.Worker, c pathCase) {
	buf := append([]byte(nil), c.tmpl...)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if c.next != nil {
			c.next(buf)
		} else {
			copy(buf, c.tmpl)
		}
		if _, r := w.Process(buf, c.hook, 100); r != c.reason {
			b.Fatalf("reason %v, want %v", r, c.reason)
		}
	}
}

func benchCase(b *testing.B, name string) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	for _, c := range hotPaths(w) {
		if c.name == name {
			benchPath(b, w, c)
			return
		}
	}
	b.Fatalf("no case %q", name)
}

// BenchmarkGREIn: GRE from the peer to the public address, Call ID and
// destination rewritten (includes a 36-byte copy of the template).
func BenchmarkGREIn(b *testing.B) { benchCase(b, "GRE in") }

// BenchmarkGREOut: GRE from the inside client, source rewritten.
func BenchmarkGREOut(b *testing.B) { benchCase(b, "GRE out") }

// BenchmarkControlSegment: an Echo-Request segment through the stream
// tracker (nothing to rewrite).
func BenchmarkControlSegment(b *testing.B) { benchCase(b, "control Echo-Request") }

// BenchmarkControlSegmentRewrite: an SLI whose Peer Call ID is restored,
// TCP checksum updated incrementally.
func BenchmarkControlSegmentRewrite(b *testing.B) { benchCase(b, "control SLI rewrite") }

// bigTable returns a worker whose table holds 10 000 established calls:
// 100 inside clients with one control connection each and 100 calls per
// connection to one PAC.
func bigTable(tb testing.TB) (*nat.Engine, *nat.Worker) {
	e, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{MaxCalls: 20000, MaxCallsPerInside: 200})
	for i := 0; i < 100; i++ {
		c := newCtrlConn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, 1, byte(i + 1)}), 30000))
		for _, p := range c.handshake() {
			w.Process(p, nat.HookControl, 1)
		}
		for j := 0; j < 100; j++ {
			id := uint16(i*100 + j)
			w.Process(c.out(pptpMsg(mOCRQ, id, 1)), nat.HookControl, 1)
			w.Process(c.in(ocrp(0x8000+id, id, 1)), nat.HookControl, 1)
		}
	}
	if got := e.Table.Stats()["calls_active"]; got != 10000 {
		tb.Fatalf("%d calls active, want 10000", got)
	}
	return e, w
}

// BenchmarkGREIn10kCalls: GRE in with 10 000 calls in the table.
func BenchmarkGREIn10kCalls(b *testing.B) {
	_, w := bigTable(b)
	id := uint16(57*100 + 42)
	benchPath(b, w, pathCase{hook: nat.HookGREIn, reason: nat.ReasonGREIn,
		tmpl: grePkt(pac.Addr(), public, greHdr(id, 7, pppFrame))})
}

// BenchmarkGREOut10kCalls: GRE out with 10 000 calls in the table.
func BenchmarkGREOut10kCalls(b *testing.B) {
	_, w := bigTable(b)
	id := uint16(57*100 + 42)
	benchPath(b, w, pathCase{hook: nat.HookGREOut, reason: nat.ReasonGREOut,
		tmpl: grePkt(netip.AddrFrom4([4]byte{192, 168, 1, 58}), pac.Addr(), greHdr(0x8000+id, 7, pppFrame))})
}

// TestBigTable: the 10 000-call table translates every call's GRE both
// ways without allocating.
func TestBigTable(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	_, w := bigTable(t)
	buf := make([]byte, 64)
	for i := 0; i < 100; i++ {
		client := netip.AddrFrom4([4]byte{192, 168, 1, byte(i + 1)})
		for j := 0; j < 100; j += 7 {
			id := uint16(i*100 + j)
			p := grePkt(pac.Addr(), public, greHdr(id, 7, pppFrame))
			if v, _ := w.Process(p, nat.HookGREIn, 2); v != nat.AcceptModified || addr(p, 16) != client ||
				binary.BigEndian.Uint16(p[26:]) != id {
				t.Fatalf("GRE in for call %d: %v to %s", id, v, addr(p, 16))
			}
			p = grePkt(client, pac.Addr(), greHdr(0x8000+id, 7, pppFrame))
			if v, _ := w.Process(p, nat.HookGREOut, 2); v != nat.AcceptModified || addr(p, 12) != public {
				t.Fatalf("GRE out for call %d: %v", id, v)
			}
		}
	}
	tmpl := grePkt(pac.Addr(), public, greHdr(4242, 7, pppFrame))
	buf = buf[:len(tmpl)]
	if n := testing.AllocsPerRun(1000, func() {
		copy(buf, tmpl)
		w.Process(buf, nat.HookGREIn, 3)
	}); n != 0 {
		t.Errorf("%v allocations per GRE packet with 10 000 calls", n)
	}
}
