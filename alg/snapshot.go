package alg

import (
	"encoding/base64"

	"github.com/pptpgw/pptpgw/alg/jsonw"
)

// StreamState is a Stream's position, for the state file: a daemon
// restarted mid-stream resumes walking where it stopped, including a
// message (and a Call ID field) cut in the middle.
type StreamState struct {
	Started  bool       `json:"started"`
	HasISN   bool       `json:"has_isn,omitempty"`
	ISN      uint32     `json:"isn,omitempty"`
	InSync   bool       `json:"in_sync"`
	FinSeen  bool       `json:"fin_seen"`
	Next     uint32     `json:"next"`
	MsgStart uint32     `json:"msg_start"`
	MsgBytes []byte     `json:"msg_bytes,omitempty"` // original bytes of the message prefix seen so far
	Wrote    []byte     `json:"wrote,omitempty"`     // bytes written in their place
	Records  [][3]int64 `json:"records,omitempty"`   // seq, original, new
}

// State returns the stream's position.
func (s *Stream) State() StreamState {
	p, recs := s.Pos(nil)
	return p.State(recs)
}

// StreamPos is a Stream's position as a value: StreamState without its
// slices, for the state writer to copy many of under the table's lock
// without allocating and to encode after it (AppendJSON). Its rewrite
// records go to a slice the caller keeps.
type StreamPos struct {
	started, hasISN, inSync, finSeen bool
	n                                uint8 // bytes of the message prefix seen
	isn, next, msgStart              uint32
	pre                              [prefixLen]byte
	wrote                            [prefixLen - HeaderLen]byte
	recs                             int32 // rewrite records: the last recs of the caller's slice
}

// Rewrite is a rewrite record in a position: the byte at Seq was Orig and
// went out as New.
type Rewrite struct {
	Seq       uint32
	Orig, New byte
}

// Pos returns the stream's position, its rewrite records appended to recs.
func (s *Stream) Pos(recs []Rewrite) (StreamPos, []Rewrite) {
	m := s.message()
	p := StreamPos{started: s.started, hasISN: s.hasISN, inSync: s.inSync, finSeen: s.finSeen, n: m.n,
		isn: s.isn, next: s.next, msgStart: m.Start, pre: m.pre, wrote: m.wrote}
	rs := s.recs()
	p.recs = int32(len(rs))
	for _, r := range rs {
		recs = append(recs, Rewrite{r.seq, r.orig, r.new})
	}
	return p, recs
}

// Records is how many rewrite records of the caller's slice are p's.
func (p *StreamPos) Records() int { return int(p.recs) }

// State is p as the state file keeps it; recs are p's records.
func (p *StreamPos) State(recs []Rewrite) StreamState {
	st := StreamState{Started: p.started, HasISN: p.hasISN, ISN: p.isn, InSync: p.inSync, FinSeen: p.finSeen, Next: p.next,
		MsgStart: p.msgStart}
	if p.n > 0 {
		st.MsgBytes = append([]byte(nil), p.pre[:p.n]...)
		st.Wrote = p.wroteBytes(make([]byte, 0, p.n))
	}
	for _, r := range recs {
		st.Records = append(st.Records, [3]int64{int64(r.Seq), int64(r.Orig), int64(r.New)})
	}
	return st
}

// wroteBytes appends StreamState.Wrote: zero where nothing was written
// (the header), then what was written in place of the prefix's bytes.
func (p *StreamPos) wroteBytes(b []byte) []byte {
	var zero [HeaderLen]byte
	if p.n <= HeaderLen {
		return append(b, zero[:p.n]...)
	}
	return append(append(b, zero[:]...), p.wrote[:min(int(p.n)-HeaderLen, len(p.wrote))]...)
}

// AppendJSON appends p as encoding/json writes its StreamState, byte for
// byte; recs are p's records.
func (p *StreamPos) AppendJSON(b []byte, recs []Rewrite) []byte {
	b = append(b, `{"started":`...)
	b = jsonw.Bool(b, p.started)
	if p.hasISN {
		b = append(b, `,"has_isn":true`...)
	}
	if p.isn != 0 {
		b = jsonw.Uint(append(b, `,"isn":`...), uint64(p.isn))
	}
	b = jsonw.Bool(append(b, `,"in_sync":`...), p.inSync)
	b = jsonw.Bool(append(b, `,"fin_seen":`...), p.finSeen)
	b = jsonw.Uint(append(b, `,"next":`...), uint64(p.next))
	b = jsonw.Uint(append(b, `,"msg_start":`...), uint64(p.msgStart))
	if p.n > 0 {
		var w [prefixLen]byte
		b = append(base64.StdEncoding.AppendEncode(append(b, `,"msg_bytes":"`...), p.pre[:p.n]), '"')
		b = append(base64.StdEncoding.AppendEncode(append(b, `,"wrote":"`...), p.wroteBytes(w[:0])), '"')
	}
	for i, r := range recs {
		if i == 0 {
			b = append(b, `,"records":[`...)
		} else {
			b = append(b, ',')
		}
		b = jsonw.Uint(append(b, '['), uint64(r.Seq))
		b = jsonw.Uint(append(b, ','), uint64(r.Orig))
		b = append(jsonw.Uint(append(b, ','), uint64(r.New)), ']')
	}
	if len(recs) > 0 {
		b = append(b, ']')
	}
	return append(b, '}')
}

// SetState restores a position saved by State. A damaged position makes
// the tracker look for the next header instead of misbehaving.
func (s *Stream) SetState(st StreamState) {
	s.release()
	*s = Stream{started: st.Started, hasISN: st.HasISN, isn: st.ISN, inSync: st.InSync, finSeen: st.FinSeen, next: st.Next}
	s.setState(st)
	s.settle()
}

// setState restores the message and the records of st into a cold part;
// SetState gives it back if the position turns out idle.
func (s *Stream) setState(st StreamState) {
	m := &s.take().msg
	m.Start = st.MsgStart
	n := len(st.MsgBytes)
	if n > prefixLen || len(st.Wrote) != n {
		s.inSync, n = false, 0
	}
	if !s.inSync && n >= HeaderLen {
		n = 0 // out of sync, only the bytes a header search needs are kept
	}
	m.n = uint8(copy(m.pre[:], st.MsgBytes[:n]))
	if n > HeaderLen {
		copy(m.wrote[:], st.Wrote[HeaderLen:n])
	}
	if s.inSync && !s.msgPosOK() {
		s.inSync = false
		*m = Msg{}
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
func (s *Stream) msgPosOK() bool {
	m := &s.c.msg
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
