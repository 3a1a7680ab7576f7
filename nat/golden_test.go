package nat_test

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/alg/pptptest"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// Golden packets are built with gopacket's SerializeLayers and
// ComputeChecksums; the checks below recompute checksums from scratch.

var (
	client1 = netip.MustParseAddrPort("192.168.1.10:40000")
	client2 = netip.MustParseAddrPort("192.168.1.11:40001")
	pac     = netip.MustParseAddrPort("203.0.113.5:1723")
	public  = netip.MustParseAddr("198.51.100.1")
	inside  = netip.MustParsePrefix("192.168.1.0/24")
)

// PAC Call IDs of the two calls; both clients use inside Call ID 0.
const (
	pacID1 = 0x0080
	pacID2 = 0x0100
)

// fakeResolver places control connections by an inside prefix, as
// ctnetlink would for a MASQUERADE that keeps ports.
type fakeResolver struct {
	identity bool
	refuse   bool
}

func (r fakeResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	in, out := src, dst
	if !inside.Contains(src.Addr.IP()) {
		in, out = dst, src
	}
	if r.refuse || !inside.Contains(in.Addr.IP()) {
		return conntrack.ConnSpec{}, false
	}
	return conntrack.ConnSpec{Inside: in, Outside: out, Identity: r.identity,
		Public: conntrack.Endpoint{Addr: conntrack.AddrFrom(public), Port: in.Port}}, true
}

var serialize = pptptest.Serialize

func ip4(s, d netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Id: 0x4242, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: net.IP(s.AsSlice()), DstIP: net.IP(d.AsSlice())}
}

// tcpPkt builds a TCP segment with flags from t (ports, seq, ack filled in).
func tcpPkt(s, d netip.AddrPort, seq, ack uint32, t layers.TCP, payload []byte) []byte {
	ip := ip4(s.Addr(), d.Addr(), layers.IPProtocolTCP)
	t.SrcPort, t.DstPort = layers.TCPPort(s.Port()), layers.TCPPort(d.Port())
	t.Seq, t.Ack, t.Window = seq, ack, 64240
	t.SetNetworkLayerForChecksum(ip)
	return serialize(ip, &t, gopacket.Payload(payload))
}

var psh = layers.TCP{ACK: true, PSH: true}

// grePkt builds an IPv4 packet around GRE bytes g.
func grePkt(s, d netip.Addr, g []byte) []byte {
	return serialize(ip4(s, d, layers.IPProtocolGRE), gopacket.Payload(g))
}

var pppFrame = []byte{0xff, 0x03, 0x00, 0xfd, 0x90, 0x01, 0x02, 0x03, 0x04, 0x05}

// The kit's builders (alg/pptpmsg) under the short names these tests
// use.
var (
	pptpMsg = pptpmsg.Msg
	greHdr  = pptpmsg.GRE
)

// Message types.
const (
	mSCCRQ = pptpmsg.SCCRQ
	mSCCRP = pptpmsg.SCCRP
	mEchoQ = pptpmsg.EchoRQ
	mOCRQ  = pptpmsg.OCRQ
	mOCRP  = pptpmsg.OCRP
	mCCRQ  = pptpmsg.CCRQ
	mCDN   = pptpmsg.CDN
	mSLI   = pptpmsg.SLI
)

// ocrp is an OCRP with Result Code r.
func ocrp(own, peer uint16, r byte) []byte {
	m := pptpMsg(mOCRP, own, peer)
	m[16] = r
	return m
}

// ctrlConn tracks one control connection's sequence numbers in the inside
// view (what mangle FORWARD sees).
type ctrlConn struct {
	client     netip.AddrPort
	cseq, sseq uint32
}

func newCtrlConn(client netip.AddrPort) *ctrlConn {
	return &ctrlConn{client: client, cseq: 1000, sseq: 9000}
}

// out is the next segment from the client, carrying payload.
func (c *ctrlConn) out(payload []byte) []byte {
	p := tcpPkt(c.client, pac, c.cseq, c.sseq, psh, payload)
	c.cseq += uint32(len(payload))
	return p
}

// in is the next segment from the PAC.
func (c *ctrlConn) in(payload []byte) []byte {
	p := tcpPkt(pac, c.client, c.sseq, c.cseq, psh, payload)
	c.sseq += uint32(len(payload))
	return p
}

// handshake returns the SYN, SYN-ACK and ACK.
func (c *ctrlConn) handshake() [][]byte {
	syn := tcpPkt(c.client, pac, c.cseq-1, 0, layers.TCP{SYN: true}, nil)
	synack := tcpPkt(pac, c.client, c.sseq-1, c.cseq, layers.TCP{SYN: true, ACK: true}, nil)
	ack := tcpPkt(c.client, pac, c.cseq, c.sseq, layers.TCP{ACK: true}, nil)
	return [][]byte{syn, synack, ack}
}

// process runs pkt through w at hook and fails on an unexpected verdict.
type processor interface {
	Process(pkt []byte, hook nat.Hook, now int64) (nat.Verdict, nat.Reason)
}

// setUp runs two clients' control connections up to established calls:
// both use inside Call ID 0; client 1 keeps 0 outside, client 2 gets 1.
// It returns the connections for more segments.
func setUp(w processor) (c1, c2 *ctrlConn) {
	c1, c2 = newCtrlConn(client1), newCtrlConn(client2)
	for _, c := range []*ctrlConn{c1, c2} {
		for _, p := range c.handshake() {
			w.Process(p, nat.HookControl, 1)
		}
		w.Process(c.out(pptpMsg(mSCCRQ, 0x0100)), nat.HookControl, 1)
		w.Process(c.in(pptpMsg(mSCCRP, 0x0100, 0x0100)), nat.HookControl, 1)
	}
	w.Process(c1.out(pptpMsg(mOCRQ, 0, 1)), nat.HookControl, 2)
	w.Process(c2.out(pptpMsg(mOCRQ, 0, 1)), nat.HookControl, 2)
	// The inside view of the replies: the PAC answered outer IDs 0 and 1,
	// the gateway restored them to 0 (what mangle FORWARD sees is the
	// packet before the ALG, i.e. with the outer ID).
	w.Process(c1.in(ocrp(pacID1, 0, 1)), nat.HookControl, 3)
	w.Process(c2.in(ocrp(pacID2, 1, 1)), nat.HookControl, 3)
	return c1, c2
}

// Checksum helpers, from scratch (RFC 1071 over the whole header, not the
// incremental update under test).

var (
	sum16  = hdr.Sum
	fold16 = hdr.Fold
)

func ihl(p []byte) int { return hdr.IPv4HeaderLen(p) }

func ipv4ChecksumOK(p []byte) bool { return hdr.Checksum(0, p[:ihl(p)]) == 0 }

func tcpChecksumOK(p []byte) bool {
	t := p[ihl(p):]
	return hdr.Checksum(hdr.TCPPseudoSum(p, len(t)), t) == 0
}

func setIPv4Checksum(p []byte) {
	p[hdr.IPv4OffChecksum], p[hdr.IPv4OffChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(p[hdr.IPv4OffChecksum:], hdr.Checksum(0, p[:ihl(p)]))
}

func addr(p []byte, off int) netip.Addr { return netip.AddrFrom4([4]byte(p[off : off+4])) }
