package nat

import (
	"encoding/binary"

	"github.com/pptpgw/pptpgw/alg/hdr"
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
	if len(icmp) < hdr.ICMPOffQuote {
		return Accept, ReasonTruncated
	}
	if t := icmp[hdr.ICMPOffType]; t != hdr.ICMPDestUnreachable && t != hdr.ICMPTimeExceeded {
		return Accept, ReasonNotPPTP
	}
	q := icmp[hdr.ICMPOffQuote:]
	if len(q) < hdr.IPv4MinLen || hdr.IPv4Version(q) != 4 {
		return Accept, ReasonTruncated
	}
	qlen := hdr.IPv4HeaderLen(q)
	if qlen < hdr.IPv4MinLen || len(q) < qlen {
		return Accept, ReasonTruncated
	}
	if q[hdr.IPv4OffProtocol] != hdr.ProtoGRE {
		return Accept, ReasonNotPPTP
	}
	if binary.BigEndian.Uint16(q[hdr.IPv4OffFlagsFrag:])&hdr.IPv4FragOffsetMask != 0 {
		return Accept, ReasonFragment // a later fragment: no GRE header quoted
	}
	g := q[qlen:]
	if len(g) < hdr.GREMinLen {
		return Accept, ReasonTruncated
	}
	if g[hdr.GREOffVer]&hdr.GREVerMask != hdr.GREVersionPPTP || g[hdr.GREOffFlags]&hdr.GREBitK == 0 ||
		binary.BigEndian.Uint16(g[hdr.GREOffProtocol:]) != hdr.GREProtoPPP {
		return Accept, ReasonNotPPTPGRE
	}
	ip := w.ip4.Contents
	public := addr4(q[hdr.IPv4OffSrc : hdr.IPv4OffSrc+4])
	if addr4(ip[hdr.IPv4OffDst:hdr.IPv4OffDst+4]) != public {
		return Accept, ReasonICMPUnknownCall // not about a packet this address sent
	}
	inside, ok := w.e.Table.GREQuoted(public, addr4(q[hdr.IPv4OffDst:hdr.IPv4OffDst+4]), binary.BigEndian.Uint16(g[hdr.GREOffCallID:]))
	if !ok {
		return Accept, ReasonICMPUnknownCall
	}
	if r := icmpPolicyOf(icmp); r != ReasonICMPIn { // icmppolicy.go
		return Drop, r
	}
	change := hdr.AddrChange(public, inside)
	qck := binary.BigEndian.Uint16(q[hdr.IPv4OffChecksum:])
	nqck := hdr.Update(qck, change)
	copy(q[hdr.IPv4OffSrc:hdr.IPv4OffSrc+4], inside[:])
	binary.BigEndian.PutUint16(q[hdr.IPv4OffChecksum:], nqck)
	// The quote starts at an even offset of the ICMP message, so its
	// 16-bit words are the message's: the change sums add up.
	ick := binary.BigEndian.Uint16(icmp[hdr.ICMPOffChecksum:])
	binary.BigEndian.PutUint16(icmp[hdr.ICMPOffChecksum:], hdr.Update(ick, change+hdr.WordChange(qck, nqck)))
	setAddr(ip, hdr.IPv4OffDst, inside)
	return AcceptModified, ReasonICMPIn
}
