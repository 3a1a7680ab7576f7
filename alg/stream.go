package alg

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/pptpgw/pptpgw/alg/hdr"
)

// prefixLen is how much of each message the tracker keeps: every field the
// gateway reads or writes lies below it.
const prefixLen = 20

// maxRecords bounds the rewrite records kept for retransmissions per
// direction. Records are pruned as the receiver acknowledges the bytes, so
// only a burst of unacknowledged messages could reach it.
const maxRecords = 128

// Handler decides, for one direction of one control connection, what the
// tracker writes into Call ID fields and Result Codes as their bytes pass.
// A field split between two segments is decided byte by byte: the high byte
// when it passes, the low byte later. The tracker calls the handler once per
// byte of the stream, on the byte's first transmission, in stream order.
// The *Msg it is given is valid during the call only (it lives in the
// Stream's cold part, which goes back to a free list when idle).
type Handler interface {
	// CallIDHigh returns the byte to put in place of hi, the high byte of
	// the Call ID field at offset off of message m. When the low byte is
	// in the same segment, m.Uint16(off) already returns the whole ID.
	CallIDHigh(m *Msg, off int, hi byte) byte
	// CallIDLow returns the byte to put in place of the low byte of that
	// field, given the whole original ID and the high byte already written.
	CallIDLow(m *Msg, off int, id uint16, newHi byte) byte
	// Result returns the byte to put in place of an OCRP or ICRP Result Code.
	Result(m *Msg, result byte) byte
	// Message is called when the last byte of a valid message has passed.
	Message(m *Msg)
	// Framing is called when the stream does not frame as PPTP: the
	// direction then passes bytes unchanged until the next valid header.
	Framing(r Reason)
}

// Msg is the tracker's view of the message being walked: its type and the
// original bytes of its first 20 octets as far as they have passed.
type Msg struct {
	// Start is the TCP sequence number of the message's first byte.
	Start uint32
	Type  MsgType
	len   uint16 // RFCLength of Type, once the header passed (0: not yet)
	n     uint8  // bytes of pre that passed
	pre   [prefixLen]byte
	// wrote: what the handler put in place of the bytes from HeaderLen
	// on (the header itself is never rewritten).
	wrote [prefixLen - HeaderLen]byte
}

// Uint16 returns the original 16-bit field at off, if both its bytes have passed.
func (m *Msg) Uint16(off int) (uint16, bool) {
	if off+2 > int(m.n) {
		return 0, false
	}
	return binary.BigEndian.Uint16(m.pre[off:]), true
}

// Byte returns the original byte at off, if it has passed.
func (m *Msg) Byte(off int) (byte, bool) {
	if off >= int(m.n) {
		return 0, false
	}
	return m.pre[off], true
}

type record struct {
	seq       uint32
	orig, new byte
}

// Verdict of the tracker for one segment.
type SegResult struct {
	Modified bool // bytes of the segment were rewritten
	Gap      bool // the segment starts beyond a gap: drop it, TCP resends it
	Retrans  bool // the segment held bytes already seen
	// Sum is the RFC 1624 "~m + m'" one's complement sum of the changes,
	// for updating the TCP checksum incrementally (payload offsets are
	// word-aligned in a TCP segment, so index parity says which half).
	Sum uint32
}

// sumChange adds the change of byte i from o to n to an RFC 1624 sum.
func sumChange(sum *uint32, i int, o, n byte) {
	if i&1 == 0 {
		*sum += hdr.WordChange(uint16(o)<<8, uint16(n)<<8)
	} else {
		*sum += hdr.WordChange(uint16(o), uint16(n))
	}
}

// Stream tracks one direction of a control connection: it follows TCP
// sequence numbers, finds message boundaries by the Length field across
// segments, and lets a Handler rewrite Call ID fields in place, whichever
// segment carries their bytes. It never holds a segment back. Memory is
// bounded: 20 bytes of the current message and at most maxRecords rewrite
// records. Not safe for concurrent use, nor to be copied once started (the
// copies would share its cold part).
//
// Two are most of a control connection's memory, and a connection is idle
// nearly all its life: between segments, its last message ended with its
// last segment and the receiver acknowledged the rewrites. So a Stream
// keeps inline only what every segment needs (24 bytes), and the message
// being walked and the rewrite records in a cold part that it holds only
// while there are any (see cold).
type Stream struct {
	started bool
	inSync  bool // walking messages; false: looking for a magic cookie
	finSeen bool
	hasISN  bool
	ended   bool // FIN or RST seen: a message cut short was counted
	// dropHalves: how often the older half of the records was dropped
	// (RecordsDropped), saturating.
	dropHalves uint16
	isn        uint32 // the SYN's sequence number, to tell a duplicate SYN from a new connection
	next       uint32 // sequence number of the next new byte
	// c: the message being walked and the rewrite records. nil: no record,
	// and the message is Msg{Start: s.idleStart()}, nothing of it passed.
	c *cold
}

// cold is the part of a Stream it needs only while a message is cut
// between segments (or the walk is out of sync) or rewrites wait for the
// receiver's acknowledgement.
type cold struct {
	msg Msg
	// The rewrite records (recs): in inl up to two (one Call ID's two
	// bytes: most directions never hold more, as the receiver acknowledges
	// them before the next message), in more once a burst needed more,
	// from then on (more goes back to the free list with its cold part,
	// so a burst allocates once). nInl counts inl's.
	nInl uint8
	// hasSYN: syn is a SYN of this direction that was not walked
	// (NoteSYN).
	hasSYN bool
	syn    uint32
	inl    [2]record
	more   *[]record
}

// coldFree keeps cold parts given back, for the next Stream that needs
// one: a segment takes one and usually gives it back at its end or at the
// acknowledgement that follows, so a steady stream of messages allocates
// nothing. It is shared by every Stream, which may be walked from several
// goroutines (alg does not assume its caller's locks), hence the mutex: it
// is held for a few instructions only, and a control segment is rare next
// to the GRE packets, which never take it. Not a sync.Pool: under the race
// detector a Pool drops a quarter of what it is given (the allocation
// tests run with -race too), and the garbage collector empties it. The
// list is bounded: parts beyond it are left to the collector.
var coldFree struct {
	mu   sync.Mutex
	n    int
	list [coldFreeMax]*cold
}

// coldFreeMax bounds the free list: more than the streams of a burst of
// new connections whose first messages are unacknowledged at once.
const coldFreeMax = 256

// maxKeptMore bounds the records slice a cold part keeps on the free list.
const maxKeptMore = 16

func getCold() *cold {
	coldFree.mu.Lock()
	if coldFree.n > 0 {
		coldFree.n--
		c := coldFree.list[coldFree.n]
		coldFree.list[coldFree.n] = nil
		coldFree.mu.Unlock()
		return c
	}
	coldFree.mu.Unlock()
	return new(cold)
}

// putCold gives c back, emptied.
func putCold(c *cold) {
	c.msg, c.nInl, c.hasSYN, c.syn = Msg{}, 0, false, 0
	if c.more != nil {
		if cap(*c.more) > maxKeptMore {
			c.more = nil
		} else {
			*c.more = (*c.more)[:0]
		}
	}
	coldFree.mu.Lock()
	if coldFree.n < coldFreeMax {
		coldFree.list[coldFree.n] = c
		coldFree.n++
	}
	coldFree.mu.Unlock()
}

// idleStart is where the next message starts when nothing of it passed
// yet: at the next byte, or before the FIN's sequence number.
func (s *Stream) idleStart() uint32 {
	if s.finSeen {
		return s.next - 1
	}
	return s.next
}

// take returns the cold part, taking one when the stream holds none.
func (s *Stream) take() *cold {
	if s.c == nil {
		s.c = getCold()
		s.c.msg.Start = s.idleStart()
	}
	return s.c
}

// settle gives the cold part back when the stream no longer needs it:
// no record, and the message is the one nil stands for. Exactly that
// message, so that nothing observable changes (a message whose start is
// not where idleStart puts it, as a restored or damaged position may
// have, keeps its cold part).
func (s *Stream) settle() {
	if c := s.c; c != nil && len(s.recs()) == 0 && !c.hasSYN && c.msg == (Msg{Start: s.idleStart()}) {
		s.c = nil
		putCold(c)
	}
}

// release gives the cold part back (SetState, before it starts afresh).
// A Stream dropped while holding one leaves it to the garbage collector.
func (s *Stream) release() {
	if s.c != nil {
		putCold(s.c)
		s.c = nil
	}
}

// message returns the message being walked.
func (s *Stream) message() Msg {
	if s.c != nil {
		return s.c.msg
	}
	return Msg{Start: s.idleStart()}
}

// setMessage makes m the message being walked, taking a cold part only
// when nil does not stand for it.
func (s *Stream) setMessage(m Msg) {
	if s.c != nil || m != (Msg{Start: s.idleStart()}) {
		s.take().msg = m
	}
}

// NoteSYN records seq, a SYN of this direction that its caller did not
// walk: one on a live connection, which the kernel's conntrack ignores
// too until an answer shows a new connection (SYNNoted). Walking it would
// restart the stream there, and the connection's own next bytes would
// then lie beyond a gap or behind it. A noted SYN keeps the cold part.
func (s *Stream) NoteSYN(seq uint32) {
	c := s.take()
	c.syn, c.hasSYN = seq, true
}

// SYNNoted reports whether seq is the SYN NoteSYN last recorded.
func (s *Stream) SYNNoted(seq uint32) bool { return s.c != nil && s.c.hasSYN && s.c.syn == seq }

// Started reports whether the tracker has seen a segment.
func (s *Stream) Started() bool { return s.started }

// Synced reports whether the tracker is walking messages (false after a
// framing error or when the connection was first seen mid-stream, until the
// next valid header).
func (s *Stream) Synced() bool { return s.started && s.inSync }

// IsISN reports whether seq is the sequence number of the SYN this
// direction started with: a SYN carrying it is a duplicate.
func (s *Stream) IsISN(seq uint32) bool { return s.hasISN && s.isn == seq }

// FinSeen reports a FIN in this direction.
func (s *Stream) FinSeen() bool { return s.finSeen }

// Next is the sequence number of the next byte the tracker expects.
func (s *Stream) Next() uint32 { return s.next }

// RecordsDropped counts rewrite records dropped because the bound was reached.
func (s *Stream) RecordsDropped() uint64 { return uint64(s.dropHalves) * maxRecords / 2 }

// Segment walks one TCP segment of this direction. payload is rewritten in
// place. syn and fin are the segment's flags.
func (s *Stream) Segment(seq uint32, syn, fin bool, payload []byte, h Handler) SegResult {
	res := s.segment(seq, syn, fin, payload, h)
	s.settle()
	return res
}

func (s *Stream) segment(seq uint32, syn, fin bool, payload []byte, h Handler) SegResult {
	var res SegResult
	if syn {
		// The SYN takes one sequence number; data starts a message.
		// A SYN with the ISN already seen is a duplicate (possibly
		// reordered after data): it must not restart the walk.
		if !s.started || (seq+1 != s.next && !(s.hasISN && seq == s.isn)) {
			s.setRecs(0) // the old connection's rewrites
			if s.c != nil {
				s.c.hasSYN = false
			}
			s.started, s.inSync, s.next = true, true, seq+1
			s.hasISN, s.isn, s.ended, s.finSeen = true, seq, false, false
			s.setMessage(Msg{Start: seq + 1})
		}
		seq++
	}
	if !s.started {
		// First seen mid-stream: find a header by its cookie. The
		// message stays as it was, wherever next moves.
		m := s.message()
		s.started, s.inSync, s.next = true, false, seq
		s.setMessage(m)
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
		s.take()
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
func (s *Stream) Reset(h Handler) { s.endInMessage(h) }

// endInMessage reports a message cut short by the end of the direction,
// once.
func (s *Stream) endInMessage(h Handler) {
	if !s.ended && s.started && s.inSync && s.c != nil && s.c.msg.n > 0 {
		h.Framing(ReasonTruncated)
	}
	s.ended = true
}

// Expect starts a direction whose SYN the tracker never saw at the
// sequence number next, which the other direction's SYN-ACK acknowledged:
// its first data byte then starts a message, as after a SYN, instead of
// being searched for a header by the magic cookie. It does nothing once
// the direction has started.
func (s *Stream) Expect(next uint32) {
	if s.started {
		return
	}
	s.started, s.inSync, s.next = true, true, next
	s.hasISN, s.isn = true, next-1
	s.setMessage(Msg{Start: next})
	s.settle()
}

// Resume moves a tracker whose position is older than its stream (restored
// from a state file written before the last segments passed) on to seq, the
// start of a segment beyond it: the bytes in between passed already, and the
// walk looks for the next header by its magic cookie. It does nothing when
// seq is not beyond the position.
func (s *Stream) Resume(seq uint32) {
	if !s.started || int32(seq-s.next) <= 0 {
		return
	}
	s.next, s.inSync, s.finSeen = seq, false, false
	s.setMessage(Msg{Start: seq})
	s.settle()
}

// Ack prunes the rewrite records the receiver has acknowledged: it drops
// retransmitted bytes below its ack anyway. An ack beyond the stream's
// next byte acknowledges bytes never sent (a spoofed segment): it prunes
// nothing, so a retransmission of rewritten bytes is still rewritten.
func (s *Stream) Ack(ack uint32) {
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
		s.settle()
	}
}

// replay gives retransmitted bytes the rewrite their first copy got.
func (s *Stream) replay(seq uint32, b []byte, sum *uint32) bool {
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

func (s *Stream) record(seq uint32, orig, new byte) {
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
func (s *Stream) recs() []record {
	c := s.c
	switch {
	case c == nil:
		return nil
	case c.more != nil:
		return *c.more
	}
	return c.inl[:c.nInl]
}

// setRecs keeps the first n records.
func (s *Stream) setRecs(n int) {
	c := s.c
	switch {
	case c == nil:
	case c.more != nil:
		*c.more = (*c.more)[:n]
	default:
		c.nInl = uint8(n)
	}
}

// push appends a record.
func (s *Stream) push(r record) {
	c := s.take()
	if c.more == nil && int(c.nInl) < len(c.inl) {
		c.inl[c.nInl] = r
		c.nInl++
		return
	}
	if c.more == nil {
		rs := append(make([]record, 0, 8), c.inl[:c.nInl]...)
		c.more = &rs
	}
	*c.more = append(*c.more, r)
}

// walk parses new bytes b starting at sequence number seq; base is b's
// index in the segment's payload.
func (s *Stream) walk(seq uint32, b []byte, base int, h Handler, sum *uint32) bool {
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
		m := &s.c.msg
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
			s.c.msg = Msg{Start: m.Start + uint32(m.len)}
		}
	}
	return mod
}

// decide asks the handler for the byte at pos of message m.
func (s *Stream) decide(m *Msg, pos int, c byte, h Handler) byte {
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

// interesting reports whether the byte at pos of a type-t message is part
// of a Call ID field or a call Result Code.
func interesting(t MsgType, pos int) bool {
	at12, at14 := Fields(t)
	switch pos {
	case 12, 13:
		return at12 != NoField
	case 14, 15:
		return at14 != NoField
	case 16:
		return HasResult(t)
	}
	return false
}

func nextInteresting(t MsgType, pos, end int) int {
	for p := pos; p < prefixLen && p < end; p++ {
		if interesting(t, p) {
			return p
		}
	}
	return end
}

// resync looks for the first valid header in the bytes kept from earlier
// segments (m.pre[:m.n], the stream just before b) followed by b, whose
// first byte has sequence number seq, so that a header split between
// segments is found as if it had come in one. Found: the stream is in sync,
// m.pre holds the header's bytes from before b, and resync returns the
// index in b to walk on from. Not found: m.pre keeps the last HeaderLen-1
// bytes for the next segment.
func (s *Stream) resync(seq uint32, b []byte) (int, bool) {
	m := &s.c.msg
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
		s.c.msg = Msg{Start: seq + uint32(j)}
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

// findHeader returns the index of the first valid 12-byte header in b, or -1.
func findHeader(b []byte) int {
	for i := 0; i+HeaderLen <= len(b); i++ {
		if b[i+offCookie] != 0x1A {
			continue
		}
		if _, r := checkHeader(b[i : i+HeaderLen]); r == ReasonNone {
			return i
		}
	}
	return -1
}
