package alg

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// The oracle: Stream, whose message state and rewrite records live in a
// cold part it holds only while needed, must behave exactly as refStream
// (oracle_ref_test.go), the tracker that kept them inline: the same bytes
// out, the same verdicts, the same handler calls (and what the handler
// sees of the message), the same position for the state file, after any
// sequence of segments, acknowledgements, resets, SYNs and restores.

// oracleCall is one handler call with everything the handler could see.
type oracleCall struct {
	kind   byte
	off    int
	in     byte
	id     uint16
	out    byte
	reason Reason
	start  uint32
	typ    MsgType
	seen   [prefixLen]int16 // m.Byte of each offset, -1: not passed
	u16    [prefixLen]int32 // m.Uint16 of each offset, -1: not passed
}

// oracleHandler rewrites some bytes (not all: some records, some not) as a
// function of what it is shown, and logs every call.
type oracleHandler struct{ calls []oracleCall }

func (h *oracleHandler) log(kind byte, m *Msg, off int, in byte, id uint16, out byte, r Reason) {
	c := oracleCall{kind: kind, off: off, in: in, id: id, out: out, reason: r}
	if m != nil {
		c.start, c.typ = m.Start, m.Type
		for i := range prefixLen {
			c.seen[i], c.u16[i] = -1, -1
			if b, ok := m.Byte(i); ok {
				c.seen[i] = int16(b)
			}
			if v, ok := m.Uint16(i); ok {
				c.u16[i] = int32(v)
			}
		}
	}
	h.calls = append(h.calls, c)
}

func (h *oracleHandler) CallIDHigh(m *Msg, off int, hi byte) byte {
	out := hi
	if v, ok := m.Uint16(off); ok {
		out = byte((v + 0x1111) >> 8)
	} else if hi&3 != 0 {
		out = hi + 3
	}
	h.log('h', m, off, hi, 0, out, 0)
	return out
}

func (h *oracleHandler) CallIDLow(m *Msg, off int, id uint16, newHi byte) byte {
	out := byte(id) ^ newHi ^ 1
	h.log('l', m, off, 0, id, out, 0)
	return out
}

func (h *oracleHandler) Result(m *Msg, r byte) byte {
	out := r
	if r&1 == 0 {
		out = r ^ 0x80
	}
	h.log('r', m, 0, r, 0, out, 0)
	return out
}

func (h *oracleHandler) Message(m *Msg)   { h.log('m', m, 0, 0, 0, 0, 0) }
func (h *oracleHandler) Framing(r Reason) { h.log('f', nil, 0, 0, 0, 0, r) }

// oraclePair drives a Stream and a refStream with the same inputs.
type oraclePair struct {
	t      testing.TB
	s      Stream
	r      refStream
	hs, hr oracleHandler
	data   []byte
	base   uint32 // sequence number of data[0]
	isn    uint32
	sent   int // data[:sent] went out
	op     int
	// panicked: both trackers panicked (refStream's known panic) and
	// the run stopped.
	panicked any
}

// segment sends a copy of data[from:to] (clamped) at its sequence number
// plus skew to both.
func (p *oraclePair) segment(from, to int, skew uint32, fin bool) {
	from, to = min(max(from, 0), len(p.data)), min(max(to, 0), len(p.data))
	to = max(from, to)
	p.send(p.base+uint32(from)+skew, false, fin, p.data[from:to])
	if skew == 0 && to > p.sent && p.s.Next()-p.base >= uint32(to) {
		p.sent = to
	}
}

// syn sends a SYN with sequence number isn.
func (p *oraclePair) syn(isn uint32) { p.send(isn, true, false, nil) }

func (p *oraclePair) send(seq uint32, syn, fin bool, payload []byte) {
	p.t.Helper()
	if p.panicked != nil {
		return
	}
	a, b := clone(payload), clone(payload)
	var ra, rb SegResult
	pr := catch(func() { rb = p.r.Segment(seq, syn, fin, b, &p.hr) })
	ps := catch(func() { ra = p.s.Segment(seq, syn, fin, a, &p.hs) })
	if (pr == nil) != (ps == nil) {
		p.t.Fatalf("op %d: segment at %d: panic %v, want %v", p.op, seq, ps, pr)
	}
	if pr != nil {
		// refStream's known panic (notes/stream.md: data after a FIN
		// that cut a header): the same in both, and the end of the run.
		p.panicked = pr
		return
	}
	if ra != rb || !bytes.Equal(a, b) {
		p.t.Fatalf("op %d: segment at %d (%d bytes) syn %v fin %v: %+v % x, want %+v % x", p.op, seq, len(payload), syn, fin, ra, a, rb, b)
	}
}

func catch(f func()) (e any) {
	defer func() { e = recover() }()
	f()
	return nil
}

// check compares everything observable.
func (p *oraclePair) check() {
	p.t.Helper()
	if p.panicked != nil {
		return
	}
	ps, rs := p.s.Pos(nil)
	pr, rr := p.r.Pos(nil)
	switch {
	case ps != pr:
		p.t.Fatalf("op %d: Pos %+v, want %+v", p.op, ps, pr)
	case !slices.Equal(rs, rr):
		p.t.Fatalf("op %d: records %v, want %v", p.op, rs, rr)
	case p.s.Started() != p.r.Started() || p.s.Synced() != p.r.Synced() || p.s.FinSeen() != p.r.FinSeen() ||
		p.s.Next() != p.r.Next() || p.s.RecordsDropped() != p.r.RecordsDropped() || p.s.IsISN(p.isn) != p.r.IsISN(p.isn):
		p.t.Fatalf("op %d: accessors differ", p.op)
	case len(p.hs.calls) != len(p.hr.calls):
		p.t.Fatalf("op %d: %d handler calls, want %d", p.op, len(p.hs.calls), len(p.hr.calls))
	}
	for i := range p.hs.calls {
		if p.hs.calls[i] != p.hr.calls[i] {
			p.t.Fatalf("op %d: handler call %d: %+v, want %+v", p.op, i, p.hs.calls[i], p.hr.calls[i])
		}
	}
	if p.s.c != nil && p.s.c.msg == (Msg{Start: p.s.idleStart()}) && len(p.s.recs()) == 0 {
		p.t.Fatalf("op %d: cold part kept while idle", p.op)
	}
}

// run interprets prog, three bytes per operation.
func (p *oraclePair) run(prog []byte) {
	for ; len(prog) >= 3 && p.panicked == nil; prog = prog[3:] {
		p.op++
		a, b := int(prog[1]), int(prog[2])
		switch prog[0] % 16 {
		case 0, 1, 2, 3: // new bytes
			p.segment(p.sent, p.sent+a, 0, false)
		case 4: // new bytes and a FIN
			p.segment(p.sent, p.sent+a%32, 0, true)
		case 5, 6: // a retransmission, maybe with new bytes
			p.segment(max(p.sent-a, 0), max(p.sent-a, 0)+b, 0, false)
		case 7: // beyond a gap
			p.segment(p.sent, p.sent+a, uint32(1+b%16), false)
		case 8, 9: // the receiver's acknowledgement
			ack := p.base + uint32(p.sent) - uint32(a) + uint32(b%4)
			p.s.Ack(ack)
			p.r.Ack(ack)
		case 10: // a RST
			p.s.Reset(&p.hs)
			p.r.Reset(&p.hr)
		case 11: // a SYN: the one seen, or a new connection starting at data[sent:]
			isn := p.isn
			if a&1 == 1 {
				isn = p.isn + uint32(a)<<16 + uint32(b)
				p.base = isn + 1 - uint32(p.sent)
			}
			p.syn(isn)
			p.isn = isn
		case 12: // saved and restored, through the state file
			st := p.s.State()
			if !statesEqual(st, p.r.State()) {
				p.t.Fatalf("op %d: State differs", p.op)
			}
			st = roundTrip(p.t, st)
			p.s.SetState(st)
			p.r.SetState(st)
		case 13: // a damaged position restored
			st := p.r.State()
			st.MsgStart += uint32(a%8) - 4
			if b&1 == 1 && len(st.MsgBytes) > 0 {
				st.MsgBytes = st.MsgBytes[:len(st.MsgBytes)-1]
			}
			st.Started = b&2 == 0
			p.s.SetState(st)
			p.r.SetState(st)
		case 14: // Expect (a direction started by the other's SYN-ACK)
			p.s.Expect(p.base + uint32(p.sent))
			p.r.Expect(p.base + uint32(p.sent))
		case 15: // Resume past bytes the tracker never saw
			p.s.Resume(p.base + uint32(p.sent+a))
			p.r.Resume(p.base + uint32(p.sent+a))
			if int32(p.s.Next()-(p.base+uint32(p.sent+a))) == 0 {
				p.sent += a
			}
		}
		p.check()
	}
}

func newOraclePair(t testing.TB, isn uint32, mid bool, data []byte) *oraclePair {
	p := &oraclePair{t: t, data: data, isn: isn, base: isn + 1}
	if !mid {
		p.syn(isn)
	}
	p.check()
	return p
}

// oracleStream builds a stream of n messages of random types, some
// damaged, some with garbage between them.
func oracleStream(rng *rand.Rand, n int) []byte {
	var b []byte
	for range n {
		m := clone(goldenCtrl[1+rng.IntN(len(goldenCtrl)-1)])
		switch rng.IntN(20) {
		case 0:
			b = append(b, byte(rng.IntN(256)), 0x1a, 0x2b)
		case 1:
			m[rng.IntN(HeaderLen)] ^= byte(1 + rng.IntN(255))
		case 2:
			m = m[:rng.IntN(len(m))]
		}
		if rng.IntN(2) == 0 && len(m) >= 18 {
			m[12], m[13], m[14], m[15], m[16] = byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(4))
		}
		b = append(b, m...)
	}
	return b
}

func TestStreamOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	runs := 3000
	if testing.Short() {
		runs = 300
	}
	panics := 0
	for run := range runs {
		data := oracleStream(rng, 1+rng.IntN(60))
		prog := make([]byte, 3*rng.IntN(200))
		for i := range prog {
			prog[i] = byte(rng.IntN(256))
		}
		// Mostly new bytes and acknowledgements, sometimes a long burst
		// without any (records beyond the inline ones, and beyond maxRecords).
		if run%3 == 0 {
			for i := 0; i < len(prog); i += 3 {
				if prog[i]%16 > 9 {
					prog[i] %= 10
				}
			}
		}
		p := newOraclePair(t, rng.Uint32(), rng.IntN(4) == 0, data)
		p.run(prog)
		p.segment(p.sent, len(data), 0, false)
		p.check()
		if p.panicked != nil {
			panics++
		}
		if t.Failed() {
			t.Logf("run %d", run)
			return
		}
	}
	t.Logf("%d runs, %d ended in refStream's panic (the same in Stream)", runs, panics)
}

// A burst of Call IDs never acknowledged: the records go past maxRecords
// and are dropped in halves, as before.
func TestStreamOracleBurst(t *testing.T) {
	data := bytes.Repeat(goldenOCRP, 2*maxRecords)
	p := newOraclePair(t, 7, false, data)
	for p.sent < len(data) {
		p.segment(p.sent, p.sent+37, 0, false)
		p.check()
	}
	if p.s.RecordsDropped() == 0 {
		t.Fatal("no record dropped")
	}
	p.segment(0, len(data), 0, false) // all retransmitted
	p.check()
	p.s.Ack(p.base + uint32(len(data)))
	p.r.Ack(p.base + uint32(len(data)))
	p.check()
	if p.s.c != nil {
		t.Error("cold part kept after the last acknowledgement")
	}
}

func FuzzStreamOracle(f *testing.F) {
	addStreamSeeds(f, func(isn uint32, mid bool, data []byte) {
		f.Add(isn, mid, data, []byte{0, 200, 0, 8, 0, 0, 1, 13, 0, 5, 30, 20, 12, 0, 0, 0, 255, 0, 8, 0, 0})
		f.Add(isn, mid, data, []byte{0, 7, 0, 4, 0, 0, 11, 3, 9, 0, 100, 0, 13, 1, 2, 15, 4, 0, 0, 255, 0})
	})
	f.Fuzz(func(t *testing.T, isn uint32, mid bool, data, prog []byte) {
		p := newOraclePair(t, isn, mid, data)
		p.run(prog)
		p.segment(p.sent, len(data), 0, false)
		p.check()
	})
}

// Stream is two of a connection's 24-byte words: its cold part is elsewhere.
func TestStreamSize(t *testing.T) {
	if n := unsafe.Sizeof(Stream{}); n > 24 {
		t.Errorf("Stream is %d bytes, want <= 24", n)
	}
}
