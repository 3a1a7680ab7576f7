package nat

// fold adds a one's complement sum's carries back in.
func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// updateChecksum applies an RFC 1624 change sum ("~m + m'" over the
// changed 16-bit words) to checksum field value hc: HC' = ~(~HC + ~m + m').
func updateChecksum(hc uint16, change uint32) uint16 {
	return ^fold(uint32(^hc) + change)
}

// addrChange is the RFC 1624 change sum for replacing IPv4 address o by n.
func addrChange(o, n [4]byte) uint32 {
	return uint32(^(uint16(o[0])<<8 | uint16(o[1]))) + uint32(uint16(n[0])<<8|uint16(n[1])) +
		uint32(^(uint16(o[2])<<8 | uint16(o[3]))) + uint32(uint16(n[2])<<8|uint16(n[3]))
}

// wordChange is the RFC 1624 change sum for a 16-bit word going from o to n.
func wordChange(o, n uint16) uint32 { return uint32(^o) + uint32(n) }
