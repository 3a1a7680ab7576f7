package alg

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
	st := StreamState{Started: s.started, HasISN: s.hasISN, ISN: s.isn, InSync: s.inSync, FinSeen: s.finSeen, Next: s.next,
		MsgStart: s.msg.Start}
	if s.msg.n > 0 {
		st.MsgBytes = append([]byte(nil), s.msg.pre[:s.msg.n]...)
		st.Wrote = make([]byte, s.msg.n) // zero where nothing was written: the header
		if s.msg.n > HeaderLen {
			copy(st.Wrote[HeaderLen:], s.msg.wrote[:])
		}
	}
	for _, r := range s.recs() {
		st.Records = append(st.Records, [3]int64{int64(r.seq), int64(r.orig), int64(r.new)})
	}
	return st
}

// SetState restores a position saved by State. A damaged position makes
// the tracker look for the next header instead of misbehaving.
func (s *Stream) SetState(st StreamState) {
	*s = Stream{started: st.Started, hasISN: st.HasISN, isn: st.ISN, inSync: st.InSync, finSeen: st.FinSeen, next: st.Next}
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
func (s *Stream) msgPosOK() bool {
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
