package alg

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/pptpgw/pptpgw/alg/hdr"
)

// call is one Handler call as the test handler saw it.
type call struct {
	Kind    string // "hi", "lo", "result", "msg", "framing"
	Type    MsgType
	Start   uint32 // sequence number of the message's first byte
	Off     int
	In, Out byte
	Reason  Reason
}

func (c call) String() string {
	switch c.Kind {
	case "msg":
		return fmt.Sprintf("msg %v@%d", c.Type, c.Start)
	case "framing":
		return fmt.Sprintf("framing %v", c.Reason)
	}
	return fmt.Sprintf("%s %v@%d+%d %02x->%02x", c.Kind, c.Type, c.Start, c.Off, c.In, c.Out)
}

// testHandler maps every Call ID by adding 0x0101 byte-wise (high byte + 1,
// low byte + 1: decidable byte by byte and the same whatever the
// segmentation), adds 0x10 to OCRP/ICRP Result Codes, records every call,
// and checks what the tracker tells it.
type testHandler struct {
	calls []call
	errs  []string
}

func (h *testHandler) errorf(format string, args ...any) {
	if len(h.errs) < 10 {
		h.errs = append(h.errs, fmt.Sprintf(format, args...))
	}
}

// checkMsg checks that the tracker's view of m agrees with a valid header.
func (h *testHandler) checkMsg(m *Msg, what string) {
	if l, ok := m.Uint16(0); !ok || int(l) != RFCLength(m.Type) {
		h.errorf("%s: Msg %v@%d Length %d, %v", what, m.Type, m.Start, l, ok)
	}
	if c, ok := m.Byte(offCookie); !ok || c != 0x1a {
		h.errorf("%s: Msg %v@%d cookie byte %#x, %v", what, m.Type, m.Start, c, ok)
	}
}

func (h *testHandler) CallIDHigh(m *Msg, off int, hi byte) byte {
	h.checkMsg(m, "CallIDHigh")
	if a12, a14 := Fields(m.Type); (off != OffCallID || a12 == NoField) && (off != OffPeerCallID || a14 == NoField) {
		h.errorf("CallIDHigh: %v has no Call ID at %d", m.Type, off)
	}
	if b, ok := m.Byte(off); !ok || b != hi {
		h.errorf("CallIDHigh: Msg.Byte(%d) = %#x, %v; want %#x", off, b, ok, hi)
	}
	// The low byte may already be visible (same segment): that is the
	// tracker's peek, and the decision must not depend on the split.
	out := hi + 1
	h.calls = append(h.calls, call{Kind: "hi", Type: m.Type, Start: m.Start, Off: off, In: hi, Out: out})
	return out
}

func (h *testHandler) CallIDLow(m *Msg, off int, id uint16, newHi byte) byte {
	h.checkMsg(m, "CallIDLow")
	if v, ok := m.Uint16(off); !ok || v != id {
		h.errorf("CallIDLow: Msg.Uint16(%d) = %#x, %v; want %#x", off, v, ok, id)
	}
	if newHi != byte(id>>8)+1 {
		h.errorf("CallIDLow: newHi %#x for id %#x, want %#x", newHi, id, byte(id>>8)+1)
	}
	out := byte(id) + 1
	h.calls = append(h.calls, call{Kind: "lo", Type: m.Type, Start: m.Start, Off: off, In: byte(id), Out: out})
	return out
}

func (h *testHandler) Result(m *Msg, r byte) byte {
	h.checkMsg(m, "Result")
	if !HasResult(m.Type) {
		h.errorf("Result called for %v", m.Type)
	}
	out := r + 0x10
	h.calls = append(h.calls, call{Kind: "result", Type: m.Type, Start: m.Start, Off: OffResult, In: r, Out: out})
	return out
}

func (h *testHandler) Message(m *Msg) {
	h.checkMsg(m, "Message")
	h.calls = append(h.calls, call{Kind: "msg", Type: m.Type, Start: m.Start})
}

func (h *testHandler) Framing(r Reason) {
	if r == ReasonNone || r == ReasonTruncated || r >= ReasonGREVersion {
		h.errorf("Framing(%v)", r)
	}
	h.calls = append(h.calls, call{Kind: "framing", Reason: r})
}

// rewritten is what the test handler makes of one valid message.
func rewritten(msg []byte) []byte {
	b := clone(msg)
	typ := MsgType(b[offControlType])<<8 | MsgType(b[offControlType+1])
	at12, at14 := Fields(typ)
	if at12 != NoField {
		b[12]++
		b[13]++
	}
	if at14 != NoField {
		b[14]++
		b[15]++
	}
	if HasResult(typ) {
		b[OffResult] += 0x10
	}
	return b
}

// part is a piece of a test stream: a valid message (rewritten by the
// test handler) or bytes the tracker must leave alone.
type part struct {
	b     []byte
	valid bool
}

func msgs(ms ...[]byte) []part {
	ps := make([]part, len(ms))
	for i, m := range ms {
		ps[i] = part{m, true}
	}
	return ps
}

func junk(b []byte) part { return part{b, false} }

// expect returns the stream, what the test handler should make of it, and
// the offsets (within the stream) of each valid message.
func expect(ps []part) (in, want []byte, starts []int) {
	for _, p := range ps {
		if p.valid {
			starts = append(starts, len(in))
			want = append(want, rewritten(p.b)...)
		} else {
			want = append(want, p.b...)
		}
		in = append(in, p.b...)
	}
	return in, want, starts
}

// testStream is the stream the tests walk: a control connection's life as
// one direction would carry it.
var testStream = msgs(goldenSCCRQ, goldenSCCRP, goldenOCRQ, goldenOCRP, goldenSLI, goldenCCRQ,
	goldenCDN, goldenStopCCRQ)

// Offsets of the OCRQ/OCRP region in testStream.
const (
	ocrqAt = 156 + 156
	ocrpAt = ocrqAt + 168
	ocrpTo = ocrpAt + 32
)

// conn drives one Stream as one direction of a TCP connection whose SYN had
// sequence number isn (mid: no SYN seen, the first byte is at isn+1).
type conn struct {
	t   testing.TB
	s   Stream
	h   testHandler
	isn uint32
}

func newConn(t testing.TB, isn uint32, mid bool) *conn {
	c := &conn{t: t, isn: isn}
	if !mid {
		if r := c.s.Segment(isn, true, false, nil, &c.h); r != (SegResult{}) {
			t.Fatalf("SYN: %+v", r)
		}
		if !c.s.Synced() || c.s.Next() != isn+1 {
			t.Fatalf("after SYN: Synced %v, Next %d; want true, %d", c.s.Synced(), c.s.Next(), isn+1)
		}
	}
	return c
}

// seq is the sequence number of stream offset off.
func (c *conn) seq(off int) uint32 { return c.isn + 1 + uint32(off) }

// send sends a copy of data[from:to] as one segment and returns the bytes
// as they leave the tracker. It checks Sum against the change.
func (c *conn) send(data []byte, from, to int, fin bool) ([]byte, SegResult) {
	c.t.Helper()
	p := clone(data[from:to])
	r := c.s.Segment(c.seq(from), false, fin, p, &c.h)
	checkSum(c.t, data[from:to], p, r)
	if r.Modified != !bytes.Equal(p, data[from:to]) {
		c.t.Errorf("segment [%d,%d): Modified %v, but bytes changed: %v", from, to, r.Modified, !bytes.Equal(p, data[from:to]))
	}
	return p, r
}

// walk sends data cut at the given offsets (ascending) as new segments and
// returns the concatenated output.
func (c *conn) walk(data []byte, cuts ...int) []byte {
	c.t.Helper()
	out := make([]byte, 0, len(data))
	prev := 0
	for i := 0; i <= len(cuts); i++ {
		end := len(data)
		if i < len(cuts) {
			end = cuts[i]
		}
		p, r := c.send(data, prev, end, false)
		if r.Gap || r.Retrans {
			c.t.Errorf("segment [%d,%d): %+v, want neither Gap nor Retrans", prev, end, r)
		}
		out = append(out, p...)
		prev = end
	}
	return out
}

func (c *conn) checkHandler() {
	c.t.Helper()
	for _, e := range c.h.errs {
		c.t.Error("handler: " + e)
	}
}

// checkSum checks that r.Sum, applied to the one's complement sum of the
// segment as it came, gives the sum of the segment as it left.
func checkSum(t testing.TB, orig, out []byte, r SegResult) {
	t.Helper()
	// Compared modulo 0xffff: a segment alone may sum to zero, which a
	// real TCP checksum (pseudo-header included) never does; TestSumTCP
	// checks real checksums exactly.
	want := csum(0, out) % 0xffff
	if got := fold(uint32(csum(0, orig))+r.Sum) % 0xffff; got != want {
		t.Errorf("Sum %#x: incremental sum %#04x, recomputed %#04x", r.Sum, got, want)
	}
}

// fold adds the carries of a one's complement sum back in.
var fold = hdr.Fold

// csum is the RFC 1071 one's complement sum of b (odd length padded with a
// zero byte) added to sum, folded.
func csum(sum uint32, b []byte) uint16 { return hdr.Fold(hdr.Sum(sum, b)) }

func diffCalls(t testing.TB, name string, want, got []call) {
	t.Helper()
	if reflect.DeepEqual(want, got) {
		return
	}
	for i := 0; i < len(want) || i < len(got); i++ {
		var w, g string
		if i < len(want) {
			w = want[i].String()
		}
		if i < len(got) {
			g = got[i].String()
		}
		if w != g {
			t.Errorf("%s: handler calls differ at call %d of %d/%d (-want +got):\n-%s\n+%s", name, i, len(want), len(got), w, g)
			return
		}
	}
}

func diffBytes(t testing.TB, name string, want, got []byte) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	for i := 0; i < len(want) || i < len(got); i++ {
		if i >= len(want) || i >= len(got) || want[i] != got[i] {
			lo, hi := max(i-4, 0), i+8
			t.Errorf("%s: output differs at byte %d of %d/%d (-want +got):\n-% x\n+% x", name, i, len(want), len(got),
				want[lo:min(hi, len(want))], got[lo:min(hi, len(got))])
			return
		}
	}
}

// isns are the initial sequence numbers the tests run with; the last two
// wrap the sequence space inside the stream, the last one between the two
// bytes of the OCRQ's Call ID.
var isns = []uint32{0, 1000, 0x7fffffff, 0xffffffff, 0xffffffff - 400, 0xffffffff - (ocrqAt + 13)}

// reference walks ps as one segment and checks the output against the
// expectation; it returns the input, the output and the handler calls.
func reference(t *testing.T, isn uint32, ps []part) (in, out []byte, calls []call) {
	t.Helper()
	in, want, starts := expect(ps)
	c := newConn(t, isn, false)
	out = c.walk(in)
	c.checkHandler()
	diffBytes(t, "one segment", want, out)
	var got []uint32
	for _, cl := range c.h.calls {
		if cl.Kind == "msg" {
			got = append(got, cl.Start)
		}
	}
	var wantStarts []uint32
	for _, s := range starts {
		wantStarts = append(wantStarts, c.seq(s))
	}
	if !reflect.DeepEqual(got, wantStarts) {
		t.Errorf("Message calls at %v, want %v", got, wantStarts)
	}
	if c.s.Next() != c.seq(len(in)) {
		t.Errorf("Next = %d, want %d", c.s.Next(), c.seq(len(in)))
	}
	return in, out, c.h.calls
}

func TestStreamOneSegment(t *testing.T) {
	for _, isn := range isns {
		t.Run(fmt.Sprint(isn), func(t *testing.T) {
			_, _, calls := reference(t, isn, testStream)
			// Per message: OCRQ hi lo; OCRP hi lo hi lo result; SLI hi lo; CCRQ hi lo;
			// CDN hi lo; eight Message calls.
			count := map[string]int{}
			for _, c := range calls {
				count[c.Kind]++
			}
			want := map[string]int{"hi": 6, "lo": 6, "result": 1, "msg": 8}
			if !reflect.DeepEqual(count, want) {
				t.Errorf("handler calls by kind (-want +got):\n-%v\n+%v", want, count)
			}
		})
	}
}

// Every split into two segments gives the same bytes and the same handler
// calls as one segment.
func TestStreamEverySplit(t *testing.T) {
	for _, isn := range isns {
		t.Run(fmt.Sprint(isn), func(t *testing.T) {
			in, out, calls := reference(t, isn, testStream)
			for cut := 0; cut <= len(in); cut++ {
				c := newConn(t, isn, false)
				got := c.walk(in, cut)
				c.checkHandler()
				diffBytes(t, fmt.Sprintf("cut at %d", cut), out, got)
				diffCalls(t, fmt.Sprintf("cut at %d", cut), calls, c.h.calls)
				if t.Failed() {
					return
				}
			}
		})
	}
}

// Every pair of split points inside the OCRQ/OCRP region, one byte before
// and after it included.
func TestStreamEveryPairOfSplits(t *testing.T) {
	isnList := isns
	if testing.Short() {
		isnList = isns[len(isns)-1:]
	}
	for _, isn := range isnList {
		t.Run(fmt.Sprint(isn), func(t *testing.T) {
			in, out, calls := reference(t, isn, testStream)
			for a := ocrqAt - 1; a <= ocrpTo+1; a++ {
				for b := a; b <= ocrpTo+1; b++ {
					c := newConn(t, isn, false)
					got := c.walk(in, a, b)
					name := fmt.Sprintf("cuts at %d, %d", a, b)
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

// Several messages per segment, and segments ending anywhere.
func TestStreamCoalesced(t *testing.T) {
	in, out, calls := reference(t, 77, testStream)
	tests := []struct {
		name string
		cuts []int
	}{
		{"two_messages_each", []int{312, 512, 552, 716}},
		{"three_then_rest", []int{480, 536}},
		{"message_and_a_half", []int{234, 390, 496, 530, 560}},
		{"call_id_bytes_apart", []int{ocrqAt + 13, ocrpAt + 13, ocrpAt + 15, ocrpAt + 17}},
		{"one_byte_segments", seqInts(1, len(in)-1)},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		var cuts []int
		for at := rng.IntN(40); at < len(in); at += 1 + rng.IntN(60) {
			cuts = append(cuts, at)
		}
		tests = append(tests, struct {
			name string
			cuts []int
		}{fmt.Sprintf("random_%d", i), cuts})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConn(t, 77, false)
			got := c.walk(in, tt.cuts...)
			c.checkHandler()
			diffBytes(t, "output", out, got)
			diffCalls(t, "calls", calls, c.h.calls)
		})
	}
}

func seqInts(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// Every message type through the tracker: each gets the rewrite Fields and
// HasResult say, and nothing else changes.
func TestStreamEveryType(t *testing.T) {
	for typ := SCCRQ; typ <= SLI; typ++ {
		t.Run(typ.String(), func(t *testing.T) {
			ps := msgs(goldenCtrl[typ], goldenCtrl[typ])
			in, out, _ := reference(t, 5, ps)
			for cut := 0; cut <= len(in); cut++ {
				c := newConn(t, 5, false)
				diffBytes(t, fmt.Sprintf("cut at %d", cut), out, c.walk(in, cut))
				c.checkHandler()
			}
		})
	}
}
