package replay_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/alg/pptptest"
)

// A synthetic PPTP conversation, built with gopacket, for tests that must
// not depend on the real captures (the fuzz target).

// pptpMsg returns a control message of type typ with its RFC length and
// header, and the 16-bit fields at offsets 12, 14 (and Result Code at 16
// for OCRP) as given.
func pptpMsg(typ uint16, fields ...uint16) []byte {
	m := pptpmsg.Msg(typ, fields...)
	switch typ {
	case pptpmsg.SCCRQ, pptpmsg.SCCRP:
		binary.BigEndian.PutUint16(m[12:], 0x0100)
		if typ == pptpmsg.SCCRP {
			m[14] = 1
		}
		copy(m[28:], "synthetic")
	case pptpmsg.OCRP:
		m[16] = 1 // connected
	case pptpmsg.SLI:
		binary.BigEndian.PutUint32(m[16:], 0xffffffff)
		binary.BigEndian.PutUint32(m[20:], 0xffffffff)
	}
	return m
}

// convo builds packets with consistent sequence numbers and timestamps.
type convo struct {
	pkts []packet
	ts   time.Time
	id   uint16
}

// tcpConn is one control connection of a convo.
type tcpConn struct {
	cv         *convo
	client     netip.AddrPort
	server     netip.AddrPort
	cseq, sseq uint32
}

func newConvo() *convo {
	return &convo{ts: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (cv *convo) add(ip []byte) {
	cv.ts = cv.ts.Add(time.Millisecond)
	cv.pkts = append(cv.pkts, packet{ts: cv.ts, ip: ip})
}

func (cv *convo) ipv4(s, d netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	cv.id++
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: cv.id, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: net.IP(s.AsSlice()), DstIP: net.IP(d.AsSlice())}
}

var serialize = pptptest.Serialize

// dial opens a control connection with the three-way handshake.
func (cv *convo) dial(client, server netip.AddrPort, isn uint32) *tcpConn {
	c := &tcpConn{cv: cv, client: client, server: server, cseq: isn, sseq: isn ^ 0x5a5a0000}
	c.segment(true, layers.TCP{SYN: true})
	c.segment(false, layers.TCP{SYN: true, ACK: true})
	c.segment(true, layers.TCP{ACK: true})
	return c
}

// segment sends one TCP segment with flags from t and payload.
func (c *tcpConn) segment(fromClient bool, t layers.TCP, payload ...byte) {
	s, d := c.client, c.server
	seq, ack := &c.cseq, &c.sseq
	if !fromClient {
		s, d = d, s
		seq, ack = ack, seq
	}
	t.SrcPort, t.DstPort = layers.TCPPort(s.Port()), layers.TCPPort(d.Port())
	t.Seq, t.Window = *seq, 64240
	if t.ACK {
		t.Ack = *ack
	}
	ip := c.cv.ipv4(s.Addr(), d.Addr(), layers.IPProtocolTCP)
	t.SetNetworkLayerForChecksum(ip)
	c.cv.add(serialize(ip, &t, gopacket.Payload(payload)))
	*seq += uint32(len(payload))
	if t.SYN || t.FIN {
		*seq++
	}
}

// send sends control messages in one segment.
func (c *tcpConn) send(fromClient bool, msgs ...[]byte) {
	var p []byte
	for _, m := range msgs {
		p = append(p, m...)
	}
	c.segment(fromClient, layers.TCP{ACK: true, PSH: true}, p...)
}

func (c *tcpConn) close() {
	c.segment(true, layers.TCP{ACK: true, FIN: true})
	c.segment(false, layers.TCP{ACK: true, FIN: true})
	c.segment(true, layers.TCP{ACK: true})
}

// gre sends an enhanced GRE packet with Call ID id and sequence number seq.
func (cv *convo) gre(s, d netip.Addr, id uint16, seq uint32) {
	payload := []byte{0xff, 0x03, 0x00, 0xfd, byte(seq), 0x42, 0x42, 0x42}
	ip := cv.ipv4(s, d, layers.IPProtocolGRE)
	cv.add(serialize(ip, gopacket.Payload(pptpmsg.GRE(id, seq, payload))))
}

// Addresses of the synthetic conversation.
var (
	synA      = netip.MustParseAddrPort("10.0.0.10:40000")
	synB      = netip.MustParseAddrPort("10.0.0.11:40001")
	synPAC    = netip.MustParseAddrPort("203.0.113.5:1723")
	synInside = []string{"10.0.0.0/24"}
)

// syntheticConversation: two clients with the same Call ID 0x1234 dial
// one PAC, which gives them 0x0080 and 0x0100; both exchange SLI, GRE,
// echoes, then clear their calls and stop their control connections. The
// second client's outer ID must be 0x1235.
func syntheticConversation() []packet {
	cv := newConvo()
	a := cv.dial(synA, synPAC, 1000)
	b := cv.dial(synB, synPAC, 0xfffffff0) // wraps around the sequence space
	a.send(true, pptpMsg(pptpmsg.SCCRQ))
	b.send(true, pptpMsg(pptpmsg.SCCRQ))
	a.send(false, pptpMsg(pptpmsg.SCCRP))
	b.send(false, pptpMsg(pptpmsg.SCCRP))
	a.send(true, pptpMsg(pptpmsg.OCRQ, 0x1234, 1))
	b.send(true, pptpMsg(pptpmsg.OCRQ, 0x1234, 1))
	a.send(false, pptpMsg(pptpmsg.OCRP, 0x0080, 0x1234))
	b.send(false, pptpMsg(pptpmsg.OCRP, 0x0100, 0x1234))
	a.send(true, pptpMsg(pptpmsg.SLI, 0x0080))
	b.send(true, pptpMsg(pptpmsg.SLI, 0x0100))
	a.send(false, pptpMsg(pptpmsg.SLI, 0x1234))
	b.send(false, pptpMsg(pptpmsg.SLI, 0x1234), pptpMsg(pptpmsg.EchoRQ, 0, 7))
	b.send(true, pptpMsg(pptpmsg.EchoRP, 0, 7))
	for i := uint32(0); i < 2; i++ {
		cv.gre(synA.Addr(), synPAC.Addr(), 0x0080, i)
		cv.gre(synPAC.Addr(), synA.Addr(), 0x1234, i)
		cv.gre(synB.Addr(), synPAC.Addr(), 0x0100, i)
		cv.gre(synPAC.Addr(), synB.Addr(), 0x1234, i)
	}
	a.send(true, pptpMsg(pptpmsg.EchoRQ, 0, 8))
	a.send(false, pptpMsg(pptpmsg.EchoRP, 0, 8))
	a.send(true, pptpMsg(pptpmsg.CCRQ, 0x1234))
	a.send(false, pptpMsg(pptpmsg.CDN, 0x0080, 0x0100))
	b.send(true, pptpMsg(pptpmsg.CCRQ, 0x1234))
	b.send(false, pptpMsg(pptpmsg.CDN, 0x0100, 0x0100))
	a.send(true, pptpMsg(pptpmsg.StopCCRQ, 0x0100))
	a.send(false, pptpMsg(pptpmsg.StopCCRP, 0x0100))
	b.send(true, pptpMsg(pptpmsg.StopCCRQ, 0x0100), pptpMsg(pptpmsg.EchoRQ, 0, 9))
	b.send(false, pptpMsg(pptpmsg.StopCCRP, 0x0100))
	a.close()
	b.close()
	return cv.pkts
}
