package hdr

import "encoding/binary"

// Sum adds b to the one's complement sum s as 16-bit big-endian words, an
// odd last byte padded with zero (RFC 1071).
func Sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// Fold adds a one's complement sum's carries back in.
func Fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Checksum is the Internet checksum of b (RFC 1071), starting from the sum
// s (a pseudo-header's), with b's own checksum field taken as it is: zero
// it first to compute one, or check that a valid one gives 0.
func Checksum(s uint32, b []byte) uint16 { return ^Fold(Sum(s, b)) }

// TCPPseudoSum is the sum of the TCP pseudo-header (RFC 9293 section
// 3.1) of IPv4 header ip for a TCP segment of tcpLen bytes.
func TCPPseudoSum(ip []byte, tcpLen int) uint32 {
	return Sum(0, ip[IPv4OffSrc:IPv4OffDst+4]) + ProtoTCP + uint32(tcpLen)
}

// Update applies an RFC 1624 change sum ("~m + m'" over the changed 16-bit
// words) to checksum field value hc: HC' = ~(~HC + ~m + m') (eqn. 3).
func Update(hc uint16, change uint32) uint16 { return ^Fold(uint32(^hc) + change) }

// UpdateAt applies change to the checksum field at ck[0:2] in place.
func UpdateAt(ck []byte, change uint32) {
	binary.BigEndian.PutUint16(ck, Update(binary.BigEndian.Uint16(ck), change))
}

// WordChange is the RFC 1624 change sum for a 16-bit word going from o to n.
func WordChange(o, n uint16) uint32 { return uint32(^o) + uint32(n) }

// AddrChange is the RFC 1624 change sum for IPv4 address o becoming n.
func AddrChange(o, n [4]byte) uint32 {
	return WordChange(uint16(o[0])<<8|uint16(o[1]), uint16(n[0])<<8|uint16(n[1])) +
		WordChange(uint16(o[2])<<8|uint16(o[3]), uint16(n[2])<<8|uint16(n[3]))
}

// SetIPv4Addr writes a at off (IPv4OffSrc or IPv4OffDst) of IPv4 header ip,
// updates the header checksum incrementally and returns the change sum, for
// the checksums of the layers above whose pseudo-header holds the address.
func SetIPv4Addr(ip []byte, off int, a [4]byte) uint32 {
	change := AddrChange([4]byte(ip[off:off+4]), a)
	copy(ip[off:off+4], a[:])
	UpdateAt(ip[IPv4OffChecksum:IPv4OffChecksum+2], change)
	return change
}
