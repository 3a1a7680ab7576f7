package replay

import (
	"encoding/binary"

	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/conntrack"
)

// The kernel's part of the translation (TCP addresses) and the inverse
// GRE address rewrites, done here in place with incremental checksums.

func ihlOf(pkt []byte) int { return hdr.IPv4HeaderLen(pkt) }

func addrAt(pkt []byte, off int) conntrack.Addr { return conntrack.Addr(pkt[off : off+4]) }

// setAddrIP rewrites the address at off (hdr.IPv4OffSrc or hdr.IPv4OffDst)
// and the IPv4 header checksum.
func setAddrIP(pkt []byte, off int, a conntrack.Addr) uint32 {
	return hdr.SetIPv4Addr(pkt, off, a)
}

// setAddrTCP also updates the TCP checksum, whose pseudo-header has the addresses.
func setAddrTCP(pkt []byte, off int, a conntrack.Addr) {
	ch := setAddrIP(pkt, off, a)
	if l4 := pkt[ihlOf(pkt):]; len(l4) >= hdr.TCPOffChecksum+2 {
		hdr.UpdateAt(l4[hdr.TCPOffChecksum:], ch)
	}
}

func fixTCPChecksum(pkt []byte, change uint32) {
	hdr.UpdateAt(pkt[ihlOf(pkt)+hdr.TCPOffChecksum:], change)
}

// segmentOf views a TCP packet as a control segment.
func segmentOf(pkt []byte) conntrack.Segment {
	t := pkt[ihlOf(pkt):]
	off := hdr.TCPHeaderLen(t)
	if off < hdr.TCPMinLen || off > len(t) {
		off = len(t)
	}
	flags := t[hdr.TCPOffFlags]
	return conntrack.Segment{
		Src:     conntrack.Endpoint{Addr: addrAt(pkt, hdr.IPv4OffSrc), Port: binary.BigEndian.Uint16(t[hdr.TCPOffSrcPort:])},
		Dst:     conntrack.Endpoint{Addr: addrAt(pkt, hdr.IPv4OffDst), Port: binary.BigEndian.Uint16(t[hdr.TCPOffDstPort:])},
		Seq:     binary.BigEndian.Uint32(t[hdr.TCPOffSeq:]),
		Ack:     binary.BigEndian.Uint32(t[hdr.TCPOffAck:]),
		SYN:     flags&hdr.TCPFlagSYN != 0,
		FIN:     flags&hdr.TCPFlagFIN != 0,
		RST:     flags&hdr.TCPFlagRST != 0,
		ACK:     flags&hdr.TCPFlagACK != 0,
		Payload: t[off:],
	}
}

// offload holds the checksums an input packet was captured with when they
// were not valid: a capture taken on the sending host holds its packets
// before the NIC fills the checksums in (checksum offload; the chapcrack
// and packetlife captures show partial TCP checksums, flowcontainer's an
// IPv4 checksum of 0). The wire, and so the gateway, sees valid ones.
type offload struct {
	ip, tcp     bool
	ipCk, tcpCk [2]byte
}

// fillChecksums gives pkt the IPv4 header and TCP checksums it would carry
// on the wire, and returns what it replaced. A TCP segment cut short by
// the capture keeps its checksum.
func fillChecksums(pkt []byte) offload {
	var o offload
	ihl := ihlOf(pkt)
	if ihl < hdr.IPv4MinLen || ihl > len(pkt) {
		return o
	}
	const ipCk = hdr.IPv4OffChecksum
	if hdr.Checksum(0, pkt[:ihl]) != 0 {
		o.ip = true
		copy(o.ipCk[:], pkt[ipCk:ipCk+2])
		pkt[ipCk], pkt[ipCk+1] = 0, 0
		binary.BigEndian.PutUint16(pkt[ipCk:], hdr.Checksum(0, pkt[:ihl]))
	}
	if pkt[hdr.IPv4OffProtocol] != hdr.ProtoTCP || int(binary.BigEndian.Uint16(pkt[hdr.IPv4OffTotalLength:])) != len(pkt) ||
		len(pkt)-ihl < hdr.TCPMinLen {
		return o
	}
	t := pkt[ihl:]
	pseudo := hdr.TCPPseudoSum(pkt, len(t))
	const tcpCk = hdr.TCPOffChecksum
	if hdr.Checksum(pseudo, t) != 0 {
		o.tcp = true
		copy(o.tcpCk[:], t[tcpCk:tcpCk+2])
		t[tcpCk], t[tcpCk+1] = 0, 0
		binary.BigEndian.PutUint16(t[tcpCk:], hdr.Checksum(pseudo, t))
	}
	return o
}

// restore puts the captured checksums back into the inside view, so that
// --lan-out holds the input's bytes.
func (o offload) restore(pkt []byte) {
	if o.ip {
		copy(pkt[hdr.IPv4OffChecksum:], o.ipCk[:])
	}
	if o.tcp {
		copy(pkt[ihlOf(pkt)+hdr.TCPOffChecksum:], o.tcpCk[:])
	}
}
