package alg

import "testing"

// nopHandler is the test handler's mapping without the recording.
type nopHandler struct{ msgs int }

func (*nopHandler) CallIDHigh(_ *Msg, _ int, hi byte) byte          { return hi + 1 }
func (*nopHandler) CallIDLow(_ *Msg, _ int, id uint16, _ byte) byte { return byte(id) + 1 }
func (*nopHandler) Result(_ *Msg, r byte) byte                      { return r + 0x10 }
func (h *nopHandler) Message(*Msg)                                  { h.msgs++ }
func (*nopHandler) Framing(Reason)                                  {}

// ocrqLoop sends one OCRQ per call through a tracker in its steady state:
// each OCRQ is acknowledged, so the records do not grow.
type ocrqLoop struct {
	s   Stream
	h   nopHandler
	buf []byte
	seq uint32
}

func newOCRQLoop() *ocrqLoop {
	l := &ocrqLoop{buf: make([]byte, len(goldenOCRQ)), seq: 0xfffff000}
	l.s.Segment(l.seq, true, false, nil, &l.h)
	l.seq++
	for range 4 { // warm up: the records slice is allocated once
		l.step()
	}
	return l
}

func (l *ocrqLoop) step() SegResult {
	copy(l.buf, goldenOCRQ)
	r := l.s.Segment(l.seq, false, false, l.buf, &l.h)
	l.seq += uint32(len(l.buf))
	l.s.Ack(l.seq)
	return r
}

func BenchmarkStreamSegment(b *testing.B) {
	l := newOCRQLoop()
	b.SetBytes(int64(len(goldenOCRQ)))
	b.ReportAllocs()
	for b.Loop() {
		if r := l.step(); !r.Modified {
			b.Fatal("OCRQ not rewritten")
		}
	}
}

// BenchmarkStreamSegmentSplit is the same OCRQ cut between the two bytes of
// its Call ID.
func BenchmarkStreamSegmentSplit(b *testing.B) {
	l := newOCRQLoop()
	b.SetBytes(int64(len(goldenOCRQ)))
	b.ReportAllocs()
	for b.Loop() {
		copy(l.buf, goldenOCRQ)
		l.s.Segment(l.seq, false, false, l.buf[:13], &l.h)
		l.s.Segment(l.seq+13, false, false, l.buf[13:], &l.h)
		l.seq += uint32(len(l.buf))
		l.s.Ack(l.seq)
	}
}

func BenchmarkParseCtrl(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, r := ParseCtrl(goldenOCRQ); r != ReasonNone {
			b.Fatal(r)
		}
	}
}

func BenchmarkParseGRE(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, r := ParseGRE(greBoth); r != ReasonNone {
			b.Fatal(r)
		}
	}
}

// The packet path allocates nothing: parsing, accessors, rewriting, and a
// tracker in its steady state (new segments, retransmissions, a split Call
// ID, a resynchronisation after garbage).
func TestZeroAllocs(t *testing.T) {
	ctrl := clone(goldenOCRP)
	gre := clone(greBoth)
	tests := []struct {
		name string
		fn   func()
	}{
		{"ParseCtrl", func() {
			c, _ := ParseCtrl(ctrl)
			c.SetCallID(c.CallID() + 1)
			c.SetPeerCallID(c.PeerCallID() + c.CallID() + uint16(c.Result()) + uint16(c.Type()) + uint16(c.Length()))
		}},
		{"ParseCtrl_bad", func() { ParseCtrl(goldenOCRP[:20]) }},
		{"ParseGRE", func() {
			g, _ := ParseGRE(gre)
			g.SetCallID(g.CallID() + uint16(g.Seq()+g.Ack()) + uint16(g.PayloadLength()+len(g.Payload())))
		}},
		{"ParseGRE_bad", func() { ParseGRE(greBoth[:3]) }},
	}
	l := newOCRQLoop()
	tests = append(tests, struct {
		name string
		fn   func()
	}{"Stream.Segment", func() { l.step() }})

	l2 := newOCRQLoop()
	tests = append(tests, struct {
		name string
		fn   func()
	}{"Stream.Segment_split_and_retransmitted", func() {
		copy(l2.buf, goldenOCRQ)
		l2.s.Segment(l2.seq, false, false, l2.buf[:13], &l2.h)
		copy(l2.buf, goldenOCRQ)
		l2.s.Segment(l2.seq, false, false, l2.buf[:40], &l2.h)
		l2.s.Segment(l2.seq+40, false, false, l2.buf[40:], &l2.h)
		l2.seq += uint32(len(l2.buf))
		l2.s.Ack(l2.seq)
	}})

	junkThenOCRQ := concat([]byte{1, 2, 3, 4, 5, 6, 7}, goldenOCRQ)
	l3 := newOCRQLoop()
	buf := make([]byte, len(junkThenOCRQ))
	tests = append(tests, struct {
		name string
		fn   func()
	}{"Stream.Segment_resync", func() {
		copy(buf, junkThenOCRQ)
		l3.s.Segment(l3.seq, false, false, buf[:9], &l3.h)
		l3.s.Segment(l3.seq+9, false, false, buf[9:], &l3.h)
		l3.seq += uint32(len(buf))
		l3.s.Ack(l3.seq)
	}})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(200, tt.fn); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
	if l.h.msgs < 200 || l3.h.msgs < 200 {
		t.Errorf("messages walked: %d, %d", l.h.msgs, l3.h.msgs)
	}
}
