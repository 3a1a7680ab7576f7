package main

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/e2e/ppp"
)

// call is one PPTP call: its IDs, its LCP engine and its GRE sequence state.
type call struct {
	id      uint16 // ours, sent in OCRQ; the PAC puts it in the GRE key
	peerID  uint16 // the PAC's, from OCRP; we put it in the GRE key
	eng     *ppp.Engine
	gre     *net.IPConn
	server  *net.IPAddr
	mu      sync.Mutex
	state   string
	result  uint8
	seq     uint32 // next sequence number to send
	recvSeq uint32 // last accepted sequence number
	recvAny bool
	ackDue  bool // we accepted data the peer has not seen acked yet
	greIn   uint64
	greOut  uint64
}

// sendPPP wraps one PPP frame (no HDLC on GRE) and sends it, piggybacking
// an acknowledgment when one is due.
func (c *call) sendPPP(frame []byte) error {
	c.mu.Lock()
	pkt := make([]byte, 16, 16+len(frame))
	pkt[0] = hdr.GREBitK | hdr.GREBitS
	pkt[1] = hdr.GREVersionPPTP
	binary.BigEndian.PutUint16(pkt[2:], hdr.GREProtoPPP)
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(frame)))
	binary.BigEndian.PutUint16(pkt[6:], c.peerID)
	binary.BigEndian.PutUint32(pkt[8:], c.seq)
	c.seq++
	if c.ackDue {
		pkt[1] |= hdr.GREBitA
		binary.BigEndian.PutUint32(pkt[12:], c.recvSeq)
		c.ackDue = false
	} else {
		pkt = pkt[:12]
	}
	pkt = append(pkt, frame...)
	c.greOut++
	c.mu.Unlock()
	_, err := c.gre.WriteToIP(pkt, c.server)
	return err
}

// sendAck sends an ack-only packet (S clear, A set: the ack sits where the
// sequence number would be) if an acknowledgment is still due.
func (c *call) sendAck() error {
	c.mu.Lock()
	if !c.ackDue {
		c.mu.Unlock()
		return nil
	}
	pkt := make([]byte, 12)
	pkt[0] = hdr.GREBitK
	pkt[1] = hdr.GREVersionPPTP | hdr.GREBitA
	binary.BigEndian.PutUint16(pkt[2:], hdr.GREProtoPPP)
	binary.BigEndian.PutUint16(pkt[6:], c.peerID)
	binary.BigEndian.PutUint32(pkt[8:], c.recvSeq)
	c.ackDue = false
	c.greOut++
	c.mu.Unlock()
	_, err := c.gre.WriteToIP(pkt, c.server)
	return err
}

// parseGRE checks an enhanced GRE v1 header and returns the call ID from
// the key, whether a sequence number is present, the number, and the PPP
// payload. ok is false for anything that is not PPTP's GRE.
func parseGRE(b []byte) (callID uint16, hasSeq bool, seq uint32, payload []byte, ok bool) {
	if len(b) < 8 || b[0]&^hdr.GREBitS != hdr.GREBitK || b[1]&^hdr.GREBitA != hdr.GREVersionPPTP ||
		binary.BigEndian.Uint16(b[2:]) != hdr.GREProtoPPP {
		return 0, false, 0, nil, false
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	callID = binary.BigEndian.Uint16(b[6:])
	off := 8
	if b[0]&hdr.GREBitS != 0 {
		if len(b) < off+4 {
			return 0, false, 0, nil, false
		}
		hasSeq, seq = true, binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	if b[1]&hdr.GREBitA != 0 {
		off += 4
	}
	if len(b) < off+plen {
		return 0, false, 0, nil, false
	}
	return callID, hasSeq, seq, b[off : off+plen], true
}

// input handles one GRE packet for this call: in-order or newer data is
// accepted (older is a duplicate: dropped, as pptp-linux does).
func (c *call) input(hasSeq bool, seq uint32, payload []byte) {
	c.mu.Lock()
	c.greIn++
	if !hasSeq {
		c.mu.Unlock()
		return // ack only
	}
	if c.recvAny && int32(seq-c.recvSeq) <= 0 {
		c.mu.Unlock()
		return
	}
	c.recvAny, c.recvSeq, c.ackDue = true, seq, true
	eng := c.eng
	c.mu.Unlock()
	if eng != nil && len(payload) > 0 {
		eng.Input(payload)
	}
}

func (c *call) status() ppp.CallStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ppp.CallStatus{CallID: c.id, PeerCallID: c.peerID, State: c.state, ResultCode: c.result,
		GREIn: c.greIn, GREOut: c.greOut}
	if c.eng != nil {
		s.Counters = c.eng.Counters()
	}
	return s
}

func (c *call) tick(now time.Time) {
	c.mu.Lock()
	eng, live := c.eng, c.state == "established"
	c.mu.Unlock()
	if !live || eng == nil {
		return
	}
	eng.Tick(now)
	c.sendAck()
}
