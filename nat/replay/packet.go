package replay

import (
	"encoding/binary"

	"github.com/pptpgw/pptpgw/conntrack"
)

// The kernel's part of the translation (TCP addresses) and the inverse
// GRE address rewrites, done here in place with incremental checksums.

func ihlOf(pkt []byte) int { return int(pkt[0]&0x0f) * 4 }

func addrAt(pkt []byte, off int) conntrack.Addr { return conntrack.Addr(pkt[off : off+4]) }

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func update(ck []byte, change uint32) {
	binary.BigEndian.PutUint16(ck, ^fold(uint32(^binary.BigEndian.Uint16(ck))+change))
}

func addrChange(o, n conntrack.Addr) uint32 {
	return uint32(^binary.BigEndian.Uint16(o[0:])) + uint32(binary.BigEndian.Uint16(n[0:])) +
		uint32(^binary.BigEndian.Uint16(o[2:])) + uint32(binary.BigEndian.Uint16(n[2:]))
}

// setAddrIP rewrites the address at off (12 source, 16 destination) and the
// IPv4 header checksum.
func setAddrIP(pkt []byte, off int, a conntrack.Addr) uint32 {
	old := addrAt(pkt, off)
	ch := addrChange(old, a)
	copy(pkt[off:off+4], a[:])
	update(pkt[10:12], ch)
	return ch
}

// setAddrTCP also updates the TCP checksum, whose pseudo-header has the addresses.
func setAddrTCP(pkt []byte, off int, a conntrack.Addr) {
	ch := setAddrIP(pkt, off, a)
	if l4 := pkt[ihlOf(pkt):]; len(l4) >= 18 {
		update(l4[16:18], ch)
	}
}

func fixTCPChecksum(pkt []byte, change uint32) {
	update(pkt[ihlOf(pkt)+16:ihlOf(pkt)+18], change)
}

// segmentOf views a TCP packet as a control segment.
func segmentOf(pkt []byte) conntrack.Segment {
	ihl := ihlOf(pkt)
	t := pkt[ihl:]
	off := int(t[12]>>4) * 4
	if off < 20 || off > len(t) {
		off = len(t)
	}
	return conntrack.Segment{
		Src:     conntrack.Endpoint{Addr: addrAt(pkt, 12), Port: binary.BigEndian.Uint16(t[0:])},
		Dst:     conntrack.Endpoint{Addr: addrAt(pkt, 16), Port: binary.BigEndian.Uint16(t[2:])},
		Seq:     binary.BigEndian.Uint32(t[4:]),
		Ack:     binary.BigEndian.Uint32(t[8:]),
		SYN:     t[13]&0x02 != 0,
		FIN:     t[13]&0x01 != 0,
		RST:     t[13]&0x04 != 0,
		ACK:     t[13]&0x10 != 0,
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
	if ihl < 20 || ihl > len(pkt) {
		return o
	}
	if fold(sum(0, pkt[:ihl])) != 0xffff {
		o.ip = true
		copy(o.ipCk[:], pkt[10:12])
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:12], ^fold(sum(0, pkt[:ihl])))
	}
	if pkt[9] != 6 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) || len(pkt)-ihl < 20 {
		return o
	}
	t := pkt[ihl:]
	pseudo := sum(sum(0, pkt[12:20]), []byte{0, 6, byte(len(t) >> 8), byte(len(t))})
	if fold(sum(pseudo, t)) != 0xffff {
		o.tcp = true
		copy(o.tcpCk[:], t[16:18])
		t[16], t[17] = 0, 0
		binary.BigEndian.PutUint16(t[16:18], ^fold(sum(pseudo, t)))
	}
	return o
}

// restore puts the captured checksums back into the inside view, so that
// --lan-out holds the input's bytes.
func (o offload) restore(pkt []byte) {
	if o.ip {
		copy(pkt[10:12], o.ipCk[:])
	}
	if o.tcp {
		copy(pkt[ihlOf(pkt)+16:], o.tcpCk[:])
	}
}

// sum adds b to a one's complement sum (RFC 1071).
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}
