package alg

// refStream is Stream as it was before its message state and rewrite
// records moved behind a pointer (cold): the same code with the Msg and the
// records inline, kept as the oracle that TestStreamOracle and
// FuzzStreamOracle compare Stream with.

import (
	"encoding/binary"
	"math"
)

type refStream struct {
	started bool
	inSync  bool // walking messages; false: looking for a magic cookie
	finSeen bool
	hasISN  bool
	ended   bool // FIN or RST seen: a message cut short was counted
	// The rewrite records (recs): in inl up to two (one Call ID's two
	// bytes: most directions never hold more, as the receiver acknowledges
	// them before the next message), in more once a burst needed more,
	// from then on. nInl counts inl's.
	nInl uint8
	// dropHalves: how often the older half of the records was dropped
	// (RecordsDropped), saturating.
	dropHalves uint16
	isn        uint32 // the SYN's sequence number, to tell a duplicate SYN from a new connection
	next       uint32 // sequence number of the next new byte
	msg        Msg
	inl        [2]record
	more       *[]record
}

// Started reports whether the tracker has seen a segment.
func (s *refStream) Started() bool { return s.started }

// Synced reports whether the tracker is walking messages (false after a
// framing error or when the connection was first seen mid-stream, until the
// next valid header).
func (s *refStream) Synced() bool { return s.started && s.inSync }

// IsISN reports whether seq is the sequence number of the SYN this
// direction started with: a SYN carrying it is a duplicate.
func (s *refStream) IsISN(seq uint32) bool { return s.hasISN && s.isn == seq }

// FinSeen reports a FIN in this direction.
func (s *refStream) FinSeen() bool { return s.finSeen }

// Next is the sequence number of the next byte the tracker expects.
func (s *refStream) Next() uint32 { return s.next }

// RecordsDropped counts rewrite records dropped because the bound was reached.
func (s *refStream) RecordsDropped() uint64 { return uint64(s.dropHalves) * maxRecords / 2 }

// Segment walks one TCP segment of this direction. payload is rewritten in
// place. syn and fin are the segment's flags.
func (s *refStream) Segment(seq uint32, syn, fin bool, payload []byte, h Handler) SegResult {
	var res SegResult
	if syn {
		// The SYN takes one sequence number; data starts a message.
		// A SYN with the ISN already seen is a duplicate (possibly
		// reordered after data): it must not restart the walk.
		if !s.started || (seq+1 != s.next && !(s.hasISN && seq == s.isn)) {
			s.started, s.inSync, s.next = true, true, seq+1
			s.hasISN, s.isn, s.ended, s.finSeen = true, seq, false, false
			s.msg = Msg{Start: seq + 1}
			s.setRecs(0) // the old connection's rewrites
		}
		seq++
	}
	if !s.started {
		// First seen mid-stream: find a header by its cookie.
		s.started, s.inSync, s.next = true, false, seq
	}
	delta := int32(seq - s.next)
	if delta > 0 {
		if len(payload) > 0 || fin {
			res.Gap = true
		}
		return res
	}
	old := 0
	if delta < 0 {
		// s.next-seq, not -delta: that overflows at exactly 2^31.
		old = len(payload)
		if d := uint64(s.next - seq); d < uint64(old) {
			old = int(d)
		}
		if old > 0 {
			res.Retrans = true
			if s.replay(seq, payload[:old], &res.Sum) {
				res.Modified = true
			}
		}
		payload = payload[old:]
		seq += uint32(old)
	}
	if len(payload) > 0 && !s.finSeen { // nothing follows a FIN: such bytes pass unchanged
		if s.walk(seq, payload, old, h, &res.Sum) {
			res.Modified = true
		}
		s.next = seq + uint32(len(payload))
	}
	if fin && seq+uint32(len(payload)) == s.next && !s.finSeen {
		s.finSeen = true
		s.next++
		s.endInMessage(h)
	}
	return res
}

// Reset is called when the connection is reset (RST): a message this
// direction had begun never completes and is a framing error (truncated),
// as when a FIN cuts it short.
func (s *refStream) Reset(h Handler) { s.endInMessage(h) }

// endInMessage reports a message cut short by the end of the direction,
// once.
func (s *refStream) endInMessage(h Handler) {
	if !s.ended && s.started && s.inSync && s.msg.n > 0 {
		h.Framing(ReasonTruncated)
	}
	s.ended = true
}

// Expect starts a direction whose SYN the tracker never saw at the
// sequence number next, which the other direction's SYN-ACK acknowledged:
// its first data byte then starts a message, as after a SYN, instead of
// being searched for a header by the magic cookie. It does nothing once
// the direction has started.
func (s *refStream) Expect(next uint32) {
	if s.started {
		return
	}
	s.started, s.inSync, s.next = true, true, next
	s.hasISN, s.isn = true, next-1
	s.msg = Msg{Start: next}
}

// Resume moves a tracker whose position is older than its stream (restored
// from a state file written before the last segments passed) on to seq, the
// start of a segment beyond it: the bytes in between passed already, and the
// walk looks for the next header by its magic cookie. It does nothing when
// seq is not beyond the position.
func (s *refStream) Resume(seq uint32) {
	if !s.started || int32(seq-s.next) <= 0 {
		return
	}
	s.next, s.inSync, s.finSeen = seq, false, false
	s.msg = Msg{Start: seq}
}

// Ack prunes the rewrite records the receiver has acknowledged: it drops
// retransmitted bytes below its ack anyway.
func (s *refStream) Ack(ack uint32) {
	if int32(ack-s.next) > 0 {
		return
	}
	i := 0
	rs := s.recs()
	for i < len(rs) && int32(rs[i].seq-ack) < 0 {
		i++
	}
	if i > 0 {
		s.setRecs(copy(rs, rs[i:]))
	}
}

// replay gives retransmitted bytes the rewrite their first copy got.
func (s *refStream) replay(seq uint32, b []byte, sum *uint32) bool {
	mod := false
	for _, r := range s.recs() {
		off := r.seq - seq
		if off < uint32(len(b)) && b[off] == r.orig {
			b[off] = r.new
			sumChange(sum, int(off), r.orig, r.new)
			mod = true
		}
	}
	return mod
}

func (s *refStream) record(seq uint32, orig, new byte) {
	if rs := s.recs(); len(rs) == maxRecords {
		// Drop the older half at once, so a peer that never acknowledges
		// costs O(1) per record rather than a shift per rewrite.
		s.setRecs(copy(rs, rs[maxRecords/2:]))
		if s.dropHalves < math.MaxUint16 {
			s.dropHalves++
		}
	}
	s.push(record{seq: seq, orig: orig, new: new})
}

// recs returns the rewrite records, oldest first.
func (s *refStream) recs() []record {
	if s.more != nil {
		return *s.more
	}
	return s.inl[:s.nInl]
}

// setRecs keeps the first n records.
func (s *refStream) setRecs(n int) {
	if s.more != nil {
		*s.more = (*s.more)[:n]
	} else {
		s.nInl = uint8(n)
	}
}

// push appends a record.
func (s *refStream) push(r record) {
	if s.more == nil && int(s.nInl) < len(s.inl) {
		s.inl[s.nInl] = r
		s.nInl++
		return
	}
	if s.more == nil {
		rs := append(make([]record, 0, 8), s.inl[:s.nInl]...)
		s.more = &rs
	}
	*s.more = append(*s.more, r)
}

// walk parses new bytes b starting at sequence number seq; base is b's
// index in the segment's payload.
func (s *refStream) walk(seq uint32, b []byte, base int, h Handler, sum *uint32) bool {
	mod := false
	i := 0
	for i < len(b) {
		if !s.inSync {
			j, ok := s.resync(seq+uint32(i), b[i:])
			if !ok {
				return mod
			}
			i += j
		}
		m := &s.msg
		pos := int(seq + uint32(i) - m.Start)
		if pos >= prefixLen || (m.len > 0 && pos >= HeaderLen && !interesting(m.Type, pos)) {
			// Skip to the next interesting byte or the message end.
			end := int(m.len)
			if pos < prefixLen {
				end = nextInteresting(m.Type, pos, end)
			}
			n := end - pos
			if n > len(b)-i {
				n = len(b) - i
			}
			if pos < prefixLen {
				c := copy(m.pre[pos:], b[i:i+n])
				m.n = uint8(pos + c)
			}
			i += n
			pos += n
		} else {
			c := b[i]
			m.pre[pos] = c
			m.n = uint8(pos + 1)
			if pos == HeaderLen-1 {
				t, r := checkHeader(m.pre[:HeaderLen])
				if r != ReasonNone {
					h.Framing(r)
					s.inSync = false
					// Look for the next header just after this one's
					// start: its bytes 1..11, maybe from earlier
					// segments, are where the search begins.
					copy(m.pre[:], m.pre[1:HeaderLen])
					m.n = HeaderLen - 1
					m.Start++
					i++
					continue
				}
				m.Type, m.len = t, uint16(RFCLength(t))
			} else if pos >= HeaderLen {
				if (pos == OffCallID || pos == OffPeerCallID) && i+1 < len(b) {
					// The low byte is in this segment too: let the
					// handler see the whole ID while it decides the
					// high byte.
					m.pre[pos+1] = b[i+1]
					m.n = uint8(pos + 2)
				}
				nc := s.decide(m, pos, c, h)
				m.n = uint8(pos + 1)
				m.wrote[pos-HeaderLen] = nc
				if nc != c {
					b[i] = nc
					sumChange(sum, base+i, c, nc)
					s.record(seq+uint32(i), c, nc)
					mod = true
				}
			}
			i++
			pos++
		}
		if m.len > 0 && pos == int(m.len) {
			h.Message(m)
			s.msg = Msg{Start: m.Start + uint32(m.len)}
		}
	}
	return mod
}

// decide asks the handler for the byte at pos of message m.
func (s *refStream) decide(m *Msg, pos int, c byte, h Handler) byte {
	switch pos {
	case OffCallID, OffPeerCallID:
		return h.CallIDHigh(m, pos, c)
	case OffCallID + 1, OffPeerCallID + 1:
		id := binary.BigEndian.Uint16(m.pre[pos-1:])
		return h.CallIDLow(m, pos-1, id, m.wrote[pos-1-HeaderLen])
	case OffResult:
		return h.Result(m, c)
	}
	return c
}

// resync looks for the first valid header in the bytes kept from earlier
// segments (m.pre[:m.n], the stream just before b) followed by b, whose
// first byte has sequence number seq, so that a header split between
// segments is found as if it had come in one. Found: the stream is in sync,
// m.pre holds the header's bytes from before b, and resync returns the
// index in b to walk on from. Not found: m.pre keeps the last HeaderLen-1
// bytes for the next segment.
func (s *refStream) resync(seq uint32, b []byte) (int, bool) {
	m := &s.msg
	if m.n >= HeaderLen || m.Start+uint32(m.n) != seq {
		m.n = 0 // not the bytes just before b (a restored or damaged state)
	}
	var hdr [HeaderLen]byte
	for k := 0; k < int(m.n); k++ {
		c := copy(hdr[:], m.pre[k:m.n])
		if c+len(b) < HeaderLen {
			break
		}
		copy(hdr[c:], b)
		if _, r := checkHeader(hdr[:]); r == ReasonNone {
			*m = Msg{Start: m.Start + uint32(k), n: uint8(c)}
			copy(m.pre[:], hdr[:c])
			s.inSync = true
			return 0, true
		}
	}
	if j := findHeader(b); j >= 0 {
		s.msg = Msg{Start: seq + uint32(j)}
		s.inSync = true
		return j, true
	}
	const keep = HeaderLen - 1
	if len(b) >= keep {
		*m = Msg{Start: seq + uint32(len(b)-keep), n: keep}
		copy(m.pre[:], b[len(b)-keep:])
	} else {
		drop := max(int(m.n)+len(b)-keep, 0)
		n := copy(m.pre[:], m.pre[drop:m.n])
		m.n = uint8(n + copy(m.pre[n:], b))
		m.Start = seq - uint32(n)
	}
	return 0, false
}

// State returns the stream's position.
func (s *refStream) State() StreamState {
	p, recs := s.Pos(nil)
	return p.State(recs)
}

// Pos returns the stream's position, its rewrite records appended to recs.
func (s *refStream) Pos(recs []Rewrite) (StreamPos, []Rewrite) {
	p := StreamPos{started: s.started, hasISN: s.hasISN, inSync: s.inSync, finSeen: s.finSeen, n: s.msg.n,
		isn: s.isn, next: s.next, msgStart: s.msg.Start, pre: s.msg.pre, wrote: s.msg.wrote}
	rs := s.recs()
	p.recs = int32(len(rs))
	for _, r := range rs {
		recs = append(recs, Rewrite{r.seq, r.orig, r.new})
	}
	return p, recs
}

// SetState restores a position saved by State. A damaged position makes
// the tracker look for the next header instead of misbehaving.
func (s *refStream) SetState(st StreamState) {
	*s = refStream{started: st.Started, hasISN: st.HasISN, isn: st.ISN, inSync: st.InSync, finSeen: st.FinSeen, next: st.Next}
	s.msg.Start = st.MsgStart
	n := len(st.MsgBytes)
	if n > prefixLen || len(st.Wrote) != n {
		s.inSync, n = false, 0
	}
	if !s.inSync && n >= HeaderLen {
		n = 0 // out of sync, only the bytes a header search needs are kept
	}
	s.msg.n = uint8(copy(s.msg.pre[:], st.MsgBytes[:n]))
	if n > HeaderLen {
		copy(s.msg.wrote[:], st.Wrote[HeaderLen:n])
	}
	if s.inSync && !s.msgPosOK() {
		s.inSync = false
		s.msg = Msg{}
	}
	for i, r := range st.Records {
		if i == maxRecords {
			break
		}
		s.push(record{seq: uint32(r[0]), orig: byte(r[1]), new: byte(r[2])})
	}
}

// msgPosOK reports whether the restored message is one the walk can
// continue: its prefix holds the bytes from its start up to Next (at most
// prefixLen of them), and once its header is complete, the header is valid
// and Next lies inside the message. It sets the message's type and length.
func (s *refStream) msgPosOK() bool {
	m := &s.msg
	pos := s.next - m.Start
	if s.finSeen {
		pos-- // the FIN took a sequence number
	}
	if pos != uint32(m.n) && (m.n != prefixLen || pos <= prefixLen) {
		return false
	}
	if m.n < HeaderLen {
		return true
	}
	t, r := checkHeader(m.pre[:HeaderLen])
	m.Type, m.len = t, uint16(RFCLength(t))
	return r == ReasonNone && pos < uint32(m.len)
}
