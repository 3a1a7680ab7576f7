package alg

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The seed corpora in testdata/fuzz/<FuzzName>/ hold the golden packets
// (written by TestWriteFuzzCorpus) and entries found by go test -fuzz.

// ctrlReason is ParseCtrl's contract written out independently.
func ctrlReason(b []byte) Reason {
	if len(b) < HeaderLen {
		return ReasonTruncated
	}
	switch {
	case binary.BigEndian.Uint32(b[4:]) != MagicCookie:
		return ReasonBadCookie
	case binary.BigEndian.Uint16(b[2:]) != 1:
		return ReasonNotControl
	}
	typ := binary.BigEndian.Uint16(b[8:])
	if typ < 1 || typ > 15 {
		return ReasonBadType
	}
	if int(binary.BigEndian.Uint16(b[0:])) != RFCLength(MsgType(typ)) {
		return ReasonBadLength
	}
	if len(b) < RFCLength(MsgType(typ)) {
		return ReasonTruncated
	}
	return ReasonNone
}

func FuzzParseCtrl(f *testing.F) {
	for _, g := range goldenCtrl[1:] {
		f.Add(clone(g))
	}
	f.Add(concat(goldenOCRQ, goldenOCRP))
	f.Add(setU16(goldenCCRQ, 0, 20))
	f.Add(goldenSLI[:12])
	f.Fuzz(func(t *testing.T, b []byte) {
		in := clone(b)
		c, r := ParseCtrl(b)
		if want := ctrlReason(in); r != want {
			t.Fatalf("ParseCtrl(% x): reason %v, want %v", in, r, want)
		}
		if r != ReasonNone {
			if c != nil {
				t.Fatalf("reason %v with a %d-byte view", r, len(c))
			}
			return
		}
		typ := c.Type()
		if typ < SCCRQ || typ > SLI || len(c) != RFCLength(typ) || c.Length() != len(c) || &c[0] != &b[0] {
			t.Fatalf("view of %d bytes: type %v, Length %d, RFCLength %d", len(c), typ, c.Length(), RFCLength(typ))
		}
		res := c.Result()
		if !HasResult(typ) && typ != SCCRP && typ != StopCCRP && typ != CDN && res != 0 {
			t.Errorf("%v: Result %d, want 0", typ, res)
		}
		// Parse, rewrite, parse: the new Call IDs and nothing else changed.
		id, peer := c.CallID()^0xa5a5, c.PeerCallID()+1
		c.SetCallID(id)
		c.SetPeerCallID(peer)
		c2, r := ParseCtrl(b)
		if r != ReasonNone || len(c2) != len(c) || c2.CallID() != id || c2.PeerCallID() != peer || c2.Type() != typ {
			t.Fatalf("after rewrite: %v, %d bytes, IDs %#x %#x", r, len(c2), c2.CallID(), c2.PeerCallID())
		}
		want := setU16(setU16(in, OffCallID, id), OffPeerCallID, peer)
		if !bytes.Equal(b, want) {
			t.Fatalf("rewrite changed other bytes:\n-% x\n+% x", want, b)
		}
	})
}

// greReason is ParseGRE's contract written out independently.
func greReason(b []byte) Reason {
	if len(b) < 4 {
		return ReasonTruncated
	}
	switch {
	case b[1]&7 != 1:
		return ReasonGREVersion
	case b[0] != 0x20 && b[0] != 0x30, b[1]&0x78 != 0:
		return ReasonGREFlags
	case b[2] != 0x88 || b[3] != 0x0b:
		return ReasonGREProto
	}
	n := 8
	if b[0]&0x10 != 0 {
		n += 4
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	if len(b) < n {
		return ReasonTruncated
	}
	return ReasonNone
}

func FuzzParseGRE(f *testing.F) {
	for _, g := range [][]byte{greBoth, greSeqOnly, greAckOnly, greNeither, grePadded, greBoth[:9]} {
		f.Add(clone(g))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := clone(b)
		g, r := ParseGRE(b)
		if want := greReason(in); r != want {
			t.Fatalf("ParseGRE(% x): reason %v, want %v", in, r, want)
		}
		if r != ReasonNone {
			if g != nil {
				t.Fatalf("reason %v with a view", r)
			}
			return
		}
		hl := g.HeaderLen()
		if hl > len(b) || (hl != 8 && hl != 12 && hl != 16) || len(g) != len(b) {
			t.Fatalf("HeaderLen %d of %d bytes", hl, len(b))
		}
		p := g.Payload()
		if len(p) > g.PayloadLength() || len(p) > len(b)-hl || (len(p) > 0 && &p[0] != &b[hl]) {
			t.Fatalf("Payload %d bytes, Payload Length %d, %d after the header", len(p), g.PayloadLength(), len(b)-hl)
		}
		seq, ack := uint32(0), uint32(0)
		if g.HasSeq() {
			seq = g.Seq()
		}
		if g.HasAck() {
			ack = g.Ack()
		}
		id := ^g.CallID()
		g.SetCallID(id)
		g2, r := ParseGRE(b)
		if r != ReasonNone || g2.CallID() != id || g2.HeaderLen() != hl ||
			(g.HasSeq() && g2.Seq() != seq) || (g.HasAck() && g2.Ack() != ack) {
			t.Fatalf("after SetCallID: %v", r)
		}
		if want := setU16(in, 6, id); !bytes.Equal(b, want) {
			t.Fatalf("SetCallID changed other bytes")
		}
	})
}

// segLens turns fuzz bytes into segment lengths: each byte is one segment
// of that many bytes (0 included); what remains of the stream is the last.
func segLens(data, cuts []byte) [][2]int {
	var segs [][2]int
	at := 0
	for _, c := range cuts {
		to := min(at+int(c), len(data))
		segs = append(segs, [2]int{at, to})
		at = to
	}
	return append(segs, [2]int{at, len(data)})
}

// decided returns the sequence numbers of the bytes the handler decided.
func decided(calls []call) map[uint32]bool {
	m := map[uint32]bool{}
	for _, c := range calls {
		switch c.Kind {
		case "hi", "result":
			m[c.Start+uint32(c.Off)] = true
		case "lo":
			m[c.Start+uint32(c.Off)+1] = true
		}
	}
	return m
}

func addStreamSeeds(f *testing.F, add func(isn uint32, mid bool, data []byte)) {
	in, _, _ := expect(testStream)
	add(0, false, in)
	add(0xffffffff-(ocrqAt+13), false, in)
	add(12345, true, in[ocrqAt+3:])
	for _, fc := range framingCases {
		in, _, _ := expect(fc.ps)
		add(0xfffffff0, false, in)
	}
	for typ := SCCRQ; typ <= SLI; typ++ {
		add(uint32(typ), false, goldenCtrl[typ])
	}
}

// FuzzStream walks a stream once as one segment and once cut where the fuzz
// bytes say: the bytes that leave, the handler calls and the final state
// must be the same, and only bytes the handler decided may change.
func FuzzStream(f *testing.F) {
	addStreamSeeds(f, func(isn uint32, mid bool, data []byte) {
		f.Add(isn, mid, data, []byte{byte(ocrqAt - 156 + 13), 1, 100, 7, 12, 3})
		f.Add(isn, mid, data, []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	})
	f.Fuzz(func(t *testing.T, isn uint32, mid bool, data, cuts []byte) {
		whole := newConn(t, isn, mid)
		want, _ := whole.send(data, 0, len(data), false)
		split := newConn(t, isn, mid)
		var got []byte
		for _, sg := range segLens(data, cuts) {
			p, r := split.send(data, sg[0], sg[1], false)
			if r.Gap || r.Retrans {
				t.Fatalf("segment %v: %+v", sg, r)
			}
			got = append(got, p...)
		}
		diffBytes(t, "split", want, got)
		diffCalls(t, "split", whole.h.calls, split.h.calls)
		whole.checkHandler()
		split.checkHandler()
		if a, b := whole.s.State(), split.s.State(); !statesEqual(a, b) {
			t.Errorf("final state (-whole +split):\n-%+v\n+%+v", a, b)
		}
		dec := decided(whole.h.calls)
		for i := range data {
			if want[i] != data[i] && !dec[whole.seq(i)] {
				t.Fatalf("byte %d changed (%#x -> %#x) without a handler decision", i, data[i], want[i])
			}
		}
	})
}

// FuzzStreamRetrans is FuzzStream with retransmissions: after each
// segment, the fuzz bytes may resend (a copy of the original of) a range
// that ends anywhere up to 255 bytes past what was sent. Resent old bytes
// must leave as they did the first time, and the stream as a whole as it
// does when walked in one piece.
func FuzzStreamRetrans(f *testing.F) {
	addStreamSeeds(f, func(isn uint32, mid bool, data []byte) {
		f.Add(isn, mid, data, []byte{200, 30, 150, 90}, []byte{10, 20, 0, 0, 200, 255, 13, 1})
	})
	f.Fuzz(func(t *testing.T, isn uint32, mid bool, data, cuts, re []byte) {
		whole := newConn(t, isn, mid)
		want, _ := whole.send(data, 0, len(data), false)
		c := newConn(t, isn, mid)
		got := make([]byte, len(data))
		sent := 0
		for _, sg := range segLens(data, cuts) {
			p, _ := c.send(data, sg[0], sg[1], false)
			copy(got[sg[0]:], p)
			sent = sg[1]
			if len(re) >= 2 {
				from := max(sent-int(re[0]), 0)
				to := min(from+int(re[1]), len(data))
				re = re[2:]
				p, r := c.send(data, from, to, false)
				if r.Gap {
					t.Fatalf("resent [%d,%d) after %d: Gap", from, to, sent)
				}
				old := min(to, sent) - from
				if old > 0 && !r.Retrans {
					t.Errorf("resent [%d,%d) after %d: not Retrans", from, to, sent)
				}
				if c.s.RecordsDropped() == 0 && old > 0 {
					diffBytes(t, "resent old bytes", want[from:from+old], p[:old])
				}
				if to > sent {
					copy(got[sent:], p[sent-from:])
					sent = to
				}
			}
		}
		diffBytes(t, "stream", want, got)
		diffCalls(t, "calls", whole.h.calls, c.h.calls)
		c.checkHandler()
	})
}

// FuzzStreamState restores any state, then walks whatever follows: the
// tracker must not panic, and its Sum and Modified must still be right.
func FuzzStreamState(f *testing.F) {
	in, _, _ := expect(testStream)
	for name, st := range damagedStates() {
		f.Add(st.Started, st.InSync, st.FinSeen, st.Next, st.MsgStart, st.MsgBytes, st.Wrote, uint16(len(name)), in)
	}
	c := newConn(f, 99, false)
	c.walk(in[:ocrqAt+13])
	st := c.s.State()
	f.Add(st.Started, st.InSync, st.FinSeen, st.Next, st.MsgStart, st.MsgBytes, st.Wrote, uint16(5), in[ocrqAt+13:])
	f.Fuzz(func(t *testing.T, started, inSync, fin bool, next, msgStart uint32, msgBytes, wrote []byte, cut uint16, data []byte) {
		var s Stream
		var h testHandler
		st := StreamState{Started: started, InSync: inSync, FinSeen: fin, Next: next, MsgStart: msgStart,
			MsgBytes: msgBytes, Wrote: wrote, Records: [][3]int64{{int64(next) - 1, 0, 1}, {int64(next), 0x12, 0x13}}}
		s.SetState(st)
		k := min(int(cut), len(data))
		for _, sg := range [][3]int{{0, k, 0}, {k, len(data), 0}, {0, len(data), 1}} {
			seq := next + uint32(sg[0]) - uint32(sg[2])*7
			p := clone(data[sg[0]:sg[1]])
			r := s.Segment(seq, false, sg[2] == 1, p, &h)
			checkSum(t, data[sg[0]:sg[1]], p, r)
			if r.Modified != !bytes.Equal(p, data[sg[0]:sg[1]]) {
				t.Errorf("Modified %v", r.Modified)
			}
		}
		s.Ack(next + uint32(len(data)))
		_ = s.State()
	})
}
