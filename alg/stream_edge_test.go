package alg

import (
	"bytes"
	"fmt"
	"testing"
)

// A retransmitted segment gets the rewrite its first copy got, without
// asking the handler again.
func TestStreamRetransmitWhole(t *testing.T) {
	for _, isn := range isns {
		t.Run(fmt.Sprint(isn), func(t *testing.T) {
			in, out, calls := reference(t, isn, testStream)
			cuts := []int{0, 100, ocrqAt, ocrqAt + 13, ocrpAt + 3, ocrpAt + 15, ocrpTo, 600, len(in)}
			c := newConn(t, isn, false)
			for i := 0; i+1 < len(cuts); i++ {
				from, to := cuts[i], cuts[i+1]
				first, _ := c.send(in, from, to, false)
				diffBytes(t, fmt.Sprintf("[%d,%d)", from, to), out[from:to], first)
				n := len(c.h.calls)
				// Retransmit this segment and every earlier one.
				for j := 0; j <= i; j++ {
					f, e := cuts[j], cuts[j+1]
					again, r := c.send(in, f, e, false)
					diffBytes(t, fmt.Sprintf("retransmitted [%d,%d) after [%d,%d)", f, e, from, to), out[f:e], again)
					if (e > f && !r.Retrans) || r.Gap {
						t.Errorf("retransmitted [%d,%d): %+v, want Retrans", f, e, r)
					}
				}
				if len(c.h.calls) != n {
					t.Errorf("retransmissions called the handler: %v", c.h.calls[n:])
				}
			}
			c.checkHandler()
			diffCalls(t, "calls", calls, c.h.calls)
		})
	}
}

// A retransmission that overlaps what was sent and carries new bytes too
// (TCP coalesces on retransmit): old bytes are replayed, new ones walked,
// and the rest of the stream and the handler calls are exactly those of an
// uninterrupted walk.
func TestStreamRetransmitPartialOverlap(t *testing.T) {
	for _, isn := range []uint32{3, 0xffffffff - (ocrqAt + 13)} {
		t.Run(fmt.Sprint(isn), func(t *testing.T) {
			in, out, calls := reference(t, isn, testStream)
			for sent := ocrqAt; sent <= ocrpTo; sent++ {
				for _, back := range []int{1, 2, 3, 4, 13, 17, sent - ocrqAt + 1, sent} {
					from := max(sent-back, 0)
					for _, ahead := range []int{0, 1, 2, 5, 40} {
						to := min(sent+ahead, len(in))
						name := fmt.Sprintf("sent %d, then [%d,%d)", sent, from, to)
						c := newConn(t, isn, false)
						c.walk(in[:sent])
						got, r := c.send(in, from, to, false)
						diffBytes(t, name, out[from:to], got)
						if !r.Retrans || r.Gap {
							t.Errorf("%s: %+v, want Retrans", name, r)
						}
						rest, _ := c.send(in, to, len(in), false)
						diffBytes(t, name+", rest", out[to:], rest)
						diffCalls(t, name, calls, c.h.calls)
						if t.Failed() {
							return
						}
					}
				}
			}
		})
	}
}

// A segment beyond a gap is flagged and left alone; once the gap is filled,
// the resent segment is walked as usual.
func TestStreamGap(t *testing.T) {
	for _, isn := range isns {
		t.Run(fmt.Sprint(isn), func(t *testing.T) {
			in, out, calls := reference(t, isn, testStream)
			points := []int{0, 1, 11, 12, 13, ocrqAt, ocrqAt + 12, ocrqAt + 13, ocrqAt + 14, ocrpAt + 14, ocrpAt + 16, ocrpTo, len(in) - 1}
			for _, x := range points {
				for _, y := range points {
					if y <= x {
						continue
					}
					name := fmt.Sprintf("gap [%d,%d)", x, y)
					c := newConn(t, isn, false)
					got := c.walk(in[:x])
					before := c.s.State()
					for _, fin := range []bool{false, true} {
						p := clone(in[y:])
						r := c.s.Segment(c.seq(y), false, fin, p, &c.h)
						if r != (SegResult{Gap: true}) {
							t.Errorf("%s: segment beyond the gap: %+v, want Gap only", name, r)
						}
						if !bytes.Equal(p, in[y:]) {
							t.Errorf("%s: segment beyond the gap was changed", name)
						}
					}
					// A pure ACK beyond the gap is no gap.
					if r := c.s.Segment(c.seq(y), false, false, nil, &c.h); r != (SegResult{}) {
						t.Errorf("%s: empty segment beyond the gap: %+v", name, r)
					}
					if st := c.s.State(); !statesEqual(before, st) {
						t.Errorf("%s: state changed by a dropped segment:\n-%+v\n+%+v", name, before, st)
					}
					fill, _ := c.send(in, x, y, false)
					rest, _ := c.send(in, y, len(in), false)
					got = append(append(got, fill...), rest...)
					diffBytes(t, name, out, got)
					diffCalls(t, name, calls, c.h.calls)
					if t.Failed() {
						return
					}
				}
			}
		})
	}
}

// framingCases are streams with bytes that do not frame as PPTP; each
// counts the Framing calls the tracker must make.
var framingCases = []struct {
	name    string
	ps      []part
	framing int
}{
	{"bad_cookie", []part{{goldenSCCRQ, true}, junk(setU16(goldenOCRQ, 6, 0x3c4e)), {goldenOCRP, true}, {goldenCCRQ, true}}, 1},
	{"wrong_length", []part{{goldenOCRQ, true}, junk(setU16(goldenCCRQ, 0, 20)), {goldenOCRP, true}, {goldenSLI, true}}, 1},
	{"length_0", []part{{goldenOCRQ, true}, junk(setU16(goldenCCRQ, 0, 0)), {goldenOCRP, true}}, 1},
	{"length_65535", []part{junk(setU16(goldenOCRQ, 0, 65535)), {goldenOCRP, true}, {goldenCCRQ, true}}, 1},
	{"management_message", []part{{goldenOCRQ, true}, junk(setU16(goldenEchoRQ, 2, 2)), {goldenOCRP, true}}, 1},
	{"type_0", []part{junk(setU16(goldenStopCCRQ, 8, 0)), {goldenOCRQ, true}, {goldenOCRP, true}}, 1},
	{"type_16", []part{{goldenSCCRQ, true}, junk(setU16(goldenCCRQ, 8, 16)), {goldenOCRQ, true}, {goldenOCRP, true}}, 1},
	{"garbage_before_first", []part{junk([]byte("GET / HTTP/1.0\r\n")), {goldenOCRQ, true}, {goldenOCRP, true}}, 1},
	{"garbage_1_byte", []part{{goldenSCCRQ, true}, junk([]byte{0}), {goldenOCRQ, true}, {goldenOCRP, true}}, 1},
	{"garbage_5_bytes", []part{{goldenSCCRQ, true}, junk([]byte{1, 2, 3, 4, 5}), {goldenOCRQ, true}, {goldenOCRP, true}}, 1},
	{"garbage_11_bytes", []part{{goldenSCCRQ, true}, junk(make([]byte, 11)), {goldenOCRQ, true}, {goldenOCRP, true}}, 1},
	// A CCRQ header but for its Length, then a lone cookie.
	{"garbage_with_cookie", []part{junk([]byte{0x00, 0x11, 0x00, 0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x0c, 0x00, 0x00, 0x1a, 0x2b, 0x3c, 0x4d}), {goldenOCRQ, true}, {goldenCCRQ, true}}, 1},
	// A message cut short takes the next 128 bytes as the rest of its body
	// (nothing can tell); the header after those is bad (inside the SCCRQ),
	// and the tracker finds the OCRP after it.
	{"truncated_message", []part{{goldenOCRQ[:40], true}, junk(concat(goldenOCRP, goldenSLI, goldenCCRQ, goldenSCCRQ)), {goldenOCRP, true}, {goldenCCRQ, true}}, 1},
	{"two_errors", []part{junk([]byte{9, 9, 9}), {goldenOCRQ, true}, junk(setU16(goldenCCRQ, 4, 0)), {goldenOCRP, true}}, 2},
}

// A framing error is reported, the bad bytes pass unchanged, and the tracker
// resynchronises on the next valid header, whatever the segmentation.
func TestStreamFraming(t *testing.T) {
	for _, tt := range framingCases {
		t.Run(tt.name, func(t *testing.T) {
			in, out, calls := reference(t, 0xffffff00, tt.ps)
			n := 0
			for _, c := range calls {
				if c.Kind == "framing" {
					n++
				}
			}
			if n != tt.framing {
				t.Errorf("%d Framing calls, want %d: %v", n, tt.framing, calls)
			}
			for cut := 0; cut <= len(in); cut++ {
				c := newConn(t, 0xffffff00, false)
				got := c.walk(in, cut)
				c.checkHandler()
				diffBytes(t, fmt.Sprintf("cut at %d", cut), out, got)
				diffCalls(t, fmt.Sprintf("cut at %d", cut), calls, c.h.calls)
				if t.Failed() {
					return
				}
			}
			c := newConn(t, 0xffffff00, false)
			diffBytes(t, "one-byte segments", out, c.walk(in, seqInts(1, len(in)-1)...))
			diffCalls(t, "one-byte segments", calls, c.h.calls)
		})
	}
}

// Garbage of every length up to 40 before a valid message, cut everywhere.
func TestStreamGarbageLengths(t *testing.T) {
	for n := 1; n <= 40; n++ {
		g := make([]byte, n)
		for i := range g {
			g[i] = byte(0xa0 + i) // no cookie byte
		}
		ps := []part{junk(g), {goldenOCRQ, true}, {goldenOCRP, true}}
		in, out, calls := reference(t, 1, ps)
		for cut := 0; cut <= len(in); cut++ {
			c := newConn(t, 1, false)
			name := fmt.Sprintf("%d bytes of garbage, cut at %d", n, cut)
			diffBytes(t, name, out, c.walk(in, cut))
			diffCalls(t, name, calls, c.h.calls)
			if t.Failed() {
				return
			}
		}
	}
}

// A connection first seen mid-stream (no SYN) is out of sync until a valid
// header passes; it then walks messages as usual.
func TestStreamMidStream(t *testing.T) {
	in, out, _ := expect(testStream)
	for _, start := range []int{0, 1, 100, ocrqAt - 3, ocrqAt, ocrqAt + 1, ocrqAt + 5, ocrqAt + 11, ocrqAt + 12, ocrqAt + 50, ocrpAt - 1, ocrpAt + 4} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			// The first message whose header starts at or after start is the
			// first one rewritten.
			want := clone(in)
			first := -1
			for _, at := range []int{0, 156, 312, 480, 512, 536, 552, 700} {
				if at >= start {
					first = at
					break
				}
			}
			copy(want[first:], out[first:])
			want = want[start:]
			for cut := start; cut <= len(in); cut++ {
				c := newConn(t, 0xfffffff0, true)
				if c.s.Synced() {
					t.Fatal("Synced before any segment")
				}
				got := clone(in)
				p, r := c.send(in, start, cut, false)
				if r.Gap || r.Retrans {
					t.Fatalf("first segment: %+v", r)
				}
				copy(got[start:], p)
				p, _ = c.send(in, cut, len(in), false)
				copy(got[cut:], p)
				diffBytes(t, fmt.Sprintf("cut at %d", cut), want, got[start:])
				c.checkHandler()
				for _, cl := range c.h.calls {
					if cl.Kind == "framing" {
						t.Errorf("cut at %d: Framing called while looking for a header", cut)
					}
				}
				if !c.s.Synced() {
					t.Errorf("cut at %d: not Synced at the end", cut)
				}
				if t.Failed() {
					return
				}
			}
		})
	}
}

// The first segment seen may also be a retransmission of bytes before it.
func TestStreamMidStreamThenOlder(t *testing.T) {
	in, out, _ := expect(testStream)
	c := newConn(t, 0, true)
	p, _ := c.send(in, ocrpAt, len(in), false)
	diffBytes(t, "first segment", out[ocrpAt:], p)
	p, r := c.send(in, ocrqAt, ocrpAt+20, false)
	// Bytes before the first seen are old: passed unchanged, never walked.
	diffBytes(t, "older segment", concat(in[ocrqAt:ocrpAt], out[ocrpAt:ocrpAt+20]), p)
	if !r.Retrans {
		t.Errorf("older segment: %+v, want Retrans", r)
	}
}

// Sequence numbers wrap at 2^32 in every position of a message: the walk
// of a stream starting just before the wrap is the one starting far from it.
func TestStreamWrap(t *testing.T) {
	in, _, _ := expect(testStream)
	ref := newConn(t, 5000, false)
	want := ref.walk(in, 300, 500)
	for back := uint32(1); back <= uint32(len(in))+2; back++ {
		isn := -back // the wrap falls at stream offset back-1
		c := newConn(t, isn, false)
		got := c.walk(in, 300, 500)
		diffBytes(t, fmt.Sprintf("isn %#x", isn), want, got)
		if c.s.Next() != isn+1+uint32(len(in)) {
			t.Errorf("isn %#x: Next %#x, want %#x", isn, c.s.Next(), isn+1+uint32(len(in)))
		}
		if t.Failed() {
			return
		}
	}
}

// A segment that starts half the sequence space away is no gap: TCP sees it
// as old. It must pass unchanged, and not crash the tracker.
func TestStreamHalfSpaceAway(t *testing.T) {
	in, out, _ := expect(testStream)
	for _, d := range []uint32{1 << 31, 1<<31 + 1, 1<<31 - 1, 1<<31 - 100, 1<<31 + 100} {
		c := newConn(t, 0, false)
		c.walk(in[:ocrpAt])
		p := clone(in)
		r := c.s.Segment(c.seq(ocrpAt)+d, false, false, p, &c.h)
		if d >= 1<<31 {
			if !r.Retrans || r.Gap || !bytes.Equal(p, in) {
				t.Errorf("segment %#x away: %+v, changed %v; want old, unchanged", d, r, !bytes.Equal(p, in))
			}
		} else if !r.Gap {
			t.Errorf("segment %#x away: %+v, want Gap", d, r)
		}
		rest, _ := c.send(in, ocrpAt, len(in), false)
		diffBytes(t, fmt.Sprintf("%#x away, then the rest", d), out[ocrpAt:], rest)
	}
}

func TestStreamFIN(t *testing.T) {
	in, out, _ := expect(testStream)
	end := len(in)

	t.Run("with_last_data", func(t *testing.T) {
		c := newConn(t, 0xfffffffe, false)
		c.walk(in[:ocrpAt])
		p, r := c.send(in, ocrpAt, end, true)
		diffBytes(t, "FIN segment", out[ocrpAt:], p)
		if !c.s.FinSeen() || c.s.Next() != c.seq(end)+1 || r.Gap || r.Retrans {
			t.Errorf("after FIN: FinSeen %v, Next %d (want %d), %+v", c.s.FinSeen(), c.s.Next(), c.seq(end)+1, r)
		}
		// The FIN segment retransmitted: same rewrite, nothing moves.
		p, r = c.send(in, ocrpAt, end, true)
		diffBytes(t, "FIN segment again", out[ocrpAt:], p)
		if !r.Retrans || r.Gap || c.s.Next() != c.seq(end)+1 {
			t.Errorf("FIN again: %+v, Next %d", r, c.s.Next())
		}
		// So is the data without the FIN, and a pure FIN.
		p, _ = c.send(in, ocrqAt, end, false)
		diffBytes(t, "data again", out[ocrqAt:], p)
		if r := c.s.Segment(c.seq(end), false, true, nil, &c.h); r.Gap || c.s.Next() != c.seq(end)+1 {
			t.Errorf("pure FIN again: %+v, Next %d", r, c.s.Next())
		}
	})

	t.Run("pure_fin", func(t *testing.T) {
		c := newConn(t, 7, false)
		c.walk(in)
		if r := c.s.Segment(c.seq(end), false, true, nil, &c.h); r != (SegResult{}) {
			t.Errorf("pure FIN: %+v", r)
		}
		if !c.s.FinSeen() || c.s.Next() != c.seq(end)+1 {
			t.Errorf("after pure FIN: FinSeen %v, Next %d", c.s.FinSeen(), c.s.Next())
		}
		if r := c.s.Segment(c.seq(end), false, true, nil, &c.h); r.Gap || c.s.Next() != c.seq(end)+1 {
			t.Errorf("pure FIN again: %+v, Next %d", r, c.s.Next())
		}
	})

	t.Run("beyond_gap", func(t *testing.T) {
		c := newConn(t, 7, false)
		c.walk(in[:ocrpAt])
		if r := c.s.Segment(c.seq(end), false, true, nil, &c.h); !r.Gap {
			t.Errorf("FIN beyond a gap: %+v, want Gap", r)
		}
		if c.s.FinSeen() {
			t.Error("FIN beyond a gap counted")
		}
		p, _ := c.send(in, ocrpAt, end, true)
		diffBytes(t, "filled with FIN", out[ocrpAt:], p)
		if !c.s.FinSeen() {
			t.Error("FIN not seen once the gap was filled")
		}
	})

	t.Run("old_data_with_fin", func(t *testing.T) {
		// A FIN on a retransmission that ends before Next is not this
		// direction's FIN yet.
		c := newConn(t, 7, false)
		c.walk(in)
		p, _ := c.send(in, ocrqAt, ocrpTo, true)
		diffBytes(t, "old data", out[ocrqAt:ocrpTo], p)
		if c.s.FinSeen() || c.s.Next() != c.seq(end) {
			t.Errorf("FinSeen %v, Next %d; want false, %d", c.s.FinSeen(), c.s.Next(), c.seq(end))
		}
	})
}

func TestStreamAck(t *testing.T) {
	in, out, _ := expect(testStream)
	c := newConn(t, 0xffffffff-ocrpAt, false) // wraps at the OCRP's start
	c.walk(in, 200, 400)
	all := len(c.s.State().Records)
	if all != 13 { // OCRQ 2, OCRP 5, SLI 2, CCRQ 2, CDN 2
		t.Fatalf("%d records, want 13", all)
	}

	c.s.Ack(c.seq(ocrqAt)) // acknowledges nothing rewritten
	if n := len(c.s.State().Records); n != all {
		t.Errorf("after Ack(OCRQ start): %d records, want %d", n, all)
	}
	c.s.Ack(c.seq(ocrpAt + 14)) // the OCRQ and the OCRP's own Call ID
	if n := len(c.s.State().Records); n != all-4 {
		t.Errorf("after Ack(OCRP peer Call ID): %d records, want %d", n, all-4)
	}
	// Acknowledged bytes are not rewritten again (the receiver drops them
	// anyway); the others are.
	p, _ := c.send(in, ocrqAt, ocrpTo, false)
	want := concat(in[ocrqAt:ocrpAt+14], out[ocrpAt+14:ocrpTo])
	diffBytes(t, "retransmission after Ack", want, p)

	c.s.Ack(c.seq(0)) // an old Ack prunes nothing
	if n := len(c.s.State().Records); n != all-4 {
		t.Errorf("after an old Ack: %d records, want %d", n, all-4)
	}
	c.s.Ack(c.seq(len(in)))
	if n := len(c.s.State().Records); n != 0 {
		t.Errorf("after Ack(end): %d records, want 0", n)
	}
	p, r := c.send(in, 0, len(in), false)
	if r.Modified || !bytes.Equal(p, in) {
		t.Errorf("retransmission after everything was acknowledged: %+v", r)
	}
}

// Records are bounded: when full, the older half goes at once, counted.
func TestStreamMaxRecords(t *testing.T) {
	const calls = maxRecords/2 + 6
	var ms [][]byte
	for i := range calls {
		ms = append(ms, withCallIDs(CCRQ, uint16(0x100+i), 0))
	}
	in, out, _ := expect(msgs(ms...))
	c := newConn(t, 42, false)
	diffBytes(t, "first", out, c.walk(in, 100, 333))
	if n := len(c.s.State().Records); n != 2*calls-maxRecords/2 {
		t.Errorf("%d records, want %d", n, 2*calls-maxRecords/2)
	}
	if d := c.s.RecordsDropped(); d != maxRecords/2 {
		t.Errorf("RecordsDropped = %d, want %d", d, maxRecords/2)
	}
	// The first maxRecords/4 messages' records (two bytes each) are gone:
	// their retransmission passes unchanged; the rest is rewritten.
	p, _ := c.send(in, 0, len(in), false)
	lost := 16 * (maxRecords / 4)
	diffBytes(t, "retransmission", concat(in[:lost], out[lost:]), p)
	c.s.Ack(c.seq(len(in)))
	if n := len(c.s.State().Records); n != 0 {
		t.Errorf("after Ack: %d records", n)
	}
}

func TestStreamSYN(t *testing.T) {
	in, out, _ := expect(testStream)

	t.Run("retransmitted_before_data", func(t *testing.T) {
		c := newConn(t, 100, false)
		if r := c.s.Segment(100, true, false, nil, &c.h); r != (SegResult{}) || c.s.Next() != 101 {
			t.Errorf("SYN again: %+v, Next %d", r, c.s.Next())
		}
		diffBytes(t, "stream", out, c.walk(in, 400))
	})

	t.Run("with_data", func(t *testing.T) {
		var s Stream
		var h testHandler
		p := clone(in)
		s.Segment(100, true, false, p, &h)
		diffBytes(t, "SYN with data", out, p)
		if s.Next() != 101+uint32(len(in)) {
			t.Errorf("Next %d", s.Next())
		}
	})

	t.Run("mid_stream_then_syn", func(t *testing.T) {
		// A tracker that started mid-stream and then sees a SYN starts over.
		c := newConn(t, 100, true)
		c.send(in, 20, 50, false)
		if r := c.s.Segment(5000, true, false, nil, &c.h); r != (SegResult{}) || !c.s.Synced() || c.s.Next() != 5001 {
			t.Errorf("SYN: %+v, Synced %v, Next %d", r, c.s.Synced(), c.s.Next())
		}
	})

	t.Run("new_isn_forgets_records", func(t *testing.T) {
		// A new connection (new ISN) on the same tracker: the old
		// connection's records must not rewrite the new one's bytes, even
		// where sequence numbers and original bytes coincide.
		c := newConn(t, 1000, false)
		c.walk(in[:ocrpAt]) // OCRQ Call ID 12 34 at seq 1000+1+ocrqAt+12
		sccrq := clone(goldenSCCRQ)
		sccrq[28], sccrq[29] = 0x12, 0x34 // in the host name
		isn2 := c.seq(ocrqAt+12) - 28 - 1 // puts them at the same seqs
		c2 := &conn{t: t, isn: isn2}
		c2.s = c.s
		if r := c2.s.Segment(isn2, true, false, nil, &c2.h); r != (SegResult{}) {
			t.Fatalf("new SYN: %+v", r)
		}
		p, _ := c2.send(sccrq, 0, len(sccrq), false)
		diffBytes(t, "new connection's SCCRQ", sccrq, p)
		p, _ = c2.send(sccrq, 0, len(sccrq), false)
		diffBytes(t, "new connection's SCCRQ retransmitted", sccrq, p)
	})
}

// finCounter counts the Framing calls of a stream.
type finCounter struct {
	nopHandler
	framing []Reason
}

func (h *finCounter) Framing(r Reason) { h.framing = append(h.framing, r) }

// A direction that ends (FIN) inside a message is a framing error
// (truncated), counted once, whether the FIN comes with the last bytes or
// on its own; one that ends between messages or out of sync is not.
func TestStreamTruncatedAtFIN(t *testing.T) {
	m := goldenOCRQ
	for _, cut := range []int{1, 11, 12, len(m) / 2, len(m) - 1, len(m)} {
		for _, sep := range []bool{false, true} {
			h := &finCounter{}
			var s Stream
			s.Segment(1000, true, false, nil, h)
			s.Segment(1001, false, !sep, append([]byte(nil), m[:cut]...), h)
			if sep {
				s.Segment(1001+uint32(cut), false, true, nil, h)
				s.Segment(1001+uint32(cut), false, true, nil, h) // retransmitted FIN
			}
			want := []Reason{ReasonTruncated}
			if cut == len(m) {
				want = nil
			}
			if fmt.Sprint(h.framing) != fmt.Sprint(want) {
				t.Errorf("cut at %d, FIN apart %v: Framing %v, want %v", cut, sep, h.framing, want)
			}
		}
	}
	h := &finCounter{}
	var s Stream
	s.Segment(1000, true, false, nil, h)
	s.Segment(1001, false, true, []byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0x1a}, h)
	if len(h.framing) != 1 {
		t.Errorf("garbage then FIN: Framing %v, want one (the garbage)", h.framing)
	}
}

// A reset ends a message cut short just as a FIN does, counted once.
func TestStreamTruncatedAtReset(t *testing.T) {
	h := &finCounter{}
	var s Stream
	s.Segment(1000, true, false, nil, h)
	s.Segment(1001, false, false, append([]byte(nil), goldenOCRQ[:30]...), h)
	s.Reset(h)
	s.Reset(h)
	s.Segment(1031, false, true, nil, h)
	if fmt.Sprint(h.framing) != fmt.Sprint([]Reason{ReasonTruncated}) {
		t.Errorf("Framing %v, want one truncated", h.framing)
	}
	h = &finCounter{}
	var s2 Stream
	s2.Segment(1000, true, false, nil, h)
	s2.Segment(1001, false, false, append([]byte(nil), goldenOCRQ...), h)
	s2.Reset(h)
	if len(h.framing) != 0 {
		t.Errorf("reset between messages: Framing %v, want none", h.framing)
	}
}

// Nothing follows a FIN in TCP: bytes a peer sends after its FIN pass
// unchanged and are not walked, even after a FIN that cut a header (the
// FIN's sequence number would leave a hole in the message's prefix), and
// from a restored position that has one.
func TestDataAfterFIN(t *testing.T) {
	var h testHandler
	var s Stream
	s.Segment(1000, true, false, nil, &h)
	s.Segment(1001, false, true, clone(goldenOCRQ[:11]), &h) // 11 header bytes, then the FIN
	p := clone(goldenOCRQ[11:40])
	if r := s.Segment(1013, false, false, p, &h); r.Modified || !bytes.Equal(p, goldenOCRQ[11:40]) || s.Next() != 1013 {
		t.Errorf("after the FIN: %+v, Next %d", r, s.Next())
	}
	var s2 Stream
	s2.SetState(StreamState{Started: true, InSync: true, FinSeen: true, Next: 1013, MsgStart: 1001,
		MsgBytes: goldenOCRQ[:11], Wrote: make([]byte, 11)})
	p = clone(goldenOCRQ)
	if r := s2.Segment(1013, false, false, p, &h); r.Modified || !bytes.Equal(p, goldenOCRQ) {
		t.Errorf("restored after the FIN: %+v", r)
	}
	// A new connection on the same ports (a SYN with another ISN) is walked again.
	p = clone(goldenOCRQ)
	s.Segment(5000, true, false, nil, &h)
	if r := s.Segment(5001, false, false, p, &h); !r.Modified || s.FinSeen() {
		t.Errorf("after a new SYN: %+v, FinSeen %v", r, s.FinSeen())
	}
}

// A SYN its caller noted instead of walking (one on a live connection)
// is remembered until a walked SYN restarts the direction, holds the cold
// part meanwhile, and changes nothing in the walk.
func TestNoteSYN(t *testing.T) {
	var h testHandler
	var s Stream
	s.Segment(1000, true, false, nil, &h)
	s.NoteSYN(77777)
	if !s.SYNNoted(77777) || s.SYNNoted(77778) || s.c == nil {
		t.Fatalf("noted: %v, cold part %v", s.SYNNoted(77777), s.c != nil)
	}
	p := clone(goldenOCRQ)
	if r := s.Segment(1001, false, false, p, &h); !r.Modified || s.Next() != 1001+uint32(len(p)) || !s.SYNNoted(77777) {
		t.Errorf("the next message: %+v, Next %d, still noted %v", r, s.Next(), s.SYNNoted(77777))
	}
	s.Segment(5000, true, false, nil, &h) // a new connection's SYN, walked
	if s.SYNNoted(77777) {
		t.Errorf("a walked SYN left the note")
	}
	s.Ack(5001)
	if s.c != nil {
		t.Errorf("idle with no note: the cold part is still held")
	}
}
