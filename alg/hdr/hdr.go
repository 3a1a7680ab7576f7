// Package hdr is pptpgw's one vocabulary for the headers it reads and
// writes in place: the IPv4 (RFC 791), TCP (RFC 9293), ICMP (RFC 792) and
// enhanced GRE (RFC 2637) field offsets, named as the RFCs name them, and
// the Internet checksum (RFC 1071) with its incremental update (RFC 1624).
//
// It imports nothing of pptpgw, so alg, conntrack, nat and nat/replay can
// all use it; it allocates nothing, and its small functions inline.
package hdr

// IPv4 header (RFC 791 section 3.1). Offsets from the start of the header.
const (
	IPv4MinLen         = 20
	IPv4OffVersionIHL  = 0  // "Version" (high nibble), "IHL" in 32-bit words (low nibble)
	IPv4OffTotalLength = 2  // "Total Length"
	IPv4OffFlagsFrag   = 6  // "Flags", "Fragment Offset"
	IPv4OffTTL         = 8  // "Time to Live"
	IPv4OffProtocol    = 9  // "Protocol"
	IPv4OffChecksum    = 10 // "Header Checksum"
	IPv4OffSrc         = 12 // "Source Address"
	IPv4OffDst         = 16 // "Destination Address"

	IPv4FragOffsetMask = 0x1fff // "Fragment Offset" within the 16-bit word at IPv4OffFlagsFrag

	// "Protocol" numbers (IANA).
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoGRE  = 47
)

// IPv4HeaderLen is the header length in bytes given by IHL; the caller has
// checked that b is not empty.
func IPv4HeaderLen(b []byte) int { return int(b[IPv4OffVersionIHL]&0x0f) * 4 }

// IPv4Version is the "Version" field.
func IPv4Version(b []byte) int { return int(b[IPv4OffVersionIHL] >> 4) }

// TCP header (RFC 9293 section 3.1). Offsets from the start of the header.
const (
	TCPMinLen        = 20
	TCPOffSrcPort    = 0  // "Source Port"
	TCPOffDstPort    = 2  // "Destination Port"
	TCPOffSeq        = 4  // "Sequence Number"
	TCPOffAck        = 8  // "Acknowledgment Number"
	TCPOffDataOffset = 12 // "Data Offset" in 32-bit words (high nibble)
	TCPOffFlags      = 13 // the control bits
	TCPOffWindow     = 14 // "Window"
	TCPOffChecksum   = 16 // "Checksum", over the pseudo-header too

	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
)

// TCPHeaderLen is the header length in bytes given by Data Offset; the
// caller has checked that b holds the fixed header.
func TCPHeaderLen(b []byte) int { return int(b[TCPOffDataOffset]>>4) * 4 }

// ICMP error messages (RFC 792): type, code, checksum, four bytes unused or
// the next-hop MTU (RFC 1191), then the quoted IPv4 header and at least the
// first 8 bytes of the datagram it carried.
const (
	ICMPOffType     = 0 // "Type"
	ICMPOffCode     = 1 // "Code"
	ICMPOffChecksum = 2 // "Checksum": the whole ICMP message, no pseudo-header
	ICMPOffQuote    = 8 // "Internet Header + 64 bits of Original Data Datagram"

	ICMPDestUnreachable = 3  // incl. code 4, fragmentation needed (RFC 1191)
	ICMPTimeExceeded    = 11 // TTL exceeded in transit, reassembly time exceeded
)

// Enhanced GRE header (RFC 2637 section 4.1), PPTP's GRE version 1.
// Offsets from the start of the GRE header.
const (
	GREOffFlags      = 0 // C R K S s Recur(3)
	GREOffVer        = 1 // A Flags(4) Ver(3)
	GREOffProtocol   = 2 // "Protocol Type", 0x880B
	GREOffPayloadLen = 4 // "Payload Length": the high half of the key
	GREOffCallID     = 6 // "Call ID": the low half of the key, the receiver's Call ID
	GREMinLen        = 8 // also all an ICMP error promises to quote

	GREBitK        = 0x20 // in GREOffFlags: Key present (must be 1)
	GREBitS        = 0x10 // in GREOffFlags: Sequence Number present
	GREBitA        = 0x80 // in GREOffVer: Acknowledgment Number present
	GREVerMask     = 0x07 // in GREOffVer: Ver
	GREFlagsMask   = 0x78 // in GREOffVer: Flags, must be 0
	GREVersionPPTP = 1
	GREProtoPPP    = 0x880B
)
