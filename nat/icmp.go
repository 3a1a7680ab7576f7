package nat

import "encoding/binary"

// ICMP error layout (RFC 792): type, code, checksum, four bytes that are
// unused or the next-hop MTU (RFC 1191), then the quoted IPv4 header and at
// least the first 8 bytes of the datagram it carried.
const (
	icmpOffType     = 0 // RFC 792 "Type"
	icmpOffChecksum = 2 // RFC 792 "Checksum": the whole ICMP message, no pseudo-header
	icmpOffQuote    = 8 // RFC 792 "Internet Header + 64 bits of Original Data Datagram"

	icmpDestUnreachable = 3  // incl. code 4, fragmentation needed (RFC 1191)
	icmpTimeExceeded    = 11 // TTL exceeded in transit, reassembly time exceeded

	ipOffFlagsFrag = 6  // RFC 791 "Flags", "Fragment Offset"
	ipOffProto     = 9  // RFC 791 "Protocol"
	ipOffChecksum  = 10 // RFC 791 "Header Checksum"
	ipOffSrc       = 12 // RFC 791 "Source Address"
	ipOffDst       = 16 // RFC 791 "Destination Address"
	ipProtoGRE     = 47

	// The quoted GRE: its first 8 bytes are all RFC 792 promises, and
	// exactly what is needed (RFC 2637 enhanced GRE header).
	greOffFlags   = 0 // C R K S s Recur
	greOffVer     = 1 // A Flags Ver
	greOffProto   = 2 // "Protocol Type", 0x880B
	greOffCallID  = 6 // "Call ID", the low half of the key
	greQuotedMin  = 8
	greBitK       = 0x20
	greProtoPPP   = 0x880B
	greVersionPPP = 1
)

// icmpIn translates an ICMP error that arrived at a public address and
// quotes PPTP GRE the gateway sent from there (DESIGN.md "The data path"):
// the outer destination and the quoted source go back to the inside end,
// whose GRE it was; the quoted GRE Call ID is the peer's and stays. The
// quoted IPv4 header checksum, the ICMP checksum and the outer IPv4
// checksum are updated incrementally (RFC 1624).
//
// Anything else passes untouched: an error about no call the gateway
// translated reaches the router itself, which is harmless.
func (w *Worker) icmpIn() (Verdict, Reason) {
	icmp := w.ip4.Payload
	if len(icmp) < icmpOffQuote {
		return Accept, ReasonTruncated
	}
	if t := icmp[icmpOffType]; t != icmpDestUnreachable && t != icmpTimeExceeded {
		return Accept, ReasonNotPPTP
	}
	q := icmp[icmpOffQuote:]
	if len(q) < 20 || q[0]>>4 != 4 {
		return Accept, ReasonTruncated
	}
	qlen := int(q[0]&0x0f) * 4
	if qlen < 20 || len(q) < qlen {
		return Accept, ReasonTruncated
	}
	if q[ipOffProto] != ipProtoGRE {
		return Accept, ReasonNotPPTP
	}
	if binary.BigEndian.Uint16(q[ipOffFlagsFrag:])&0x1fff != 0 {
		return Accept, ReasonFragment // a later fragment: no GRE header quoted
	}
	g := q[qlen:]
	if len(g) < greQuotedMin {
		return Accept, ReasonTruncated
	}
	if g[greOffVer]&0x07 != greVersionPPP || g[greOffFlags]&greBitK == 0 ||
		binary.BigEndian.Uint16(g[greOffProto:]) != greProtoPPP {
		return Accept, ReasonNotPPTPGRE
	}
	hdr := w.ip4.Contents
	public := addr4(q[ipOffSrc : ipOffSrc+4])
	if addr4(hdr[ipOffDst:ipOffDst+4]) != public {
		return Accept, ReasonICMPUnknownCall // not about a packet this address sent
	}
	inside, ok := w.e.Table.GREQuoted(public, addr4(q[ipOffDst:ipOffDst+4]), binary.BigEndian.Uint16(g[greOffCallID:]))
	if !ok {
		return Accept, ReasonICMPUnknownCall
	}
	if r := icmpPolicyOf(icmp); r != ReasonICMPIn { // icmppolicy.go
		return Drop, r
	}
	change := addrChange(public, inside)
	qck := binary.BigEndian.Uint16(q[ipOffChecksum:])
	nqck := updateChecksum(qck, change)
	copy(q[ipOffSrc:ipOffSrc+4], inside[:])
	binary.BigEndian.PutUint16(q[ipOffChecksum:], nqck)
	// The quote starts at an even offset of the ICMP message, so its
	// 16-bit words are the message's: the change sums add up.
	ick := binary.BigEndian.Uint16(icmp[icmpOffChecksum:])
	binary.BigEndian.PutUint16(icmp[icmpOffChecksum:], updateChecksum(ick, change+wordChange(qck, nqck)))
	setAddr(hdr, ipOffDst, inside)
	return AcceptModified, ReasonICMPIn
}
