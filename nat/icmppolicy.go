package nat

import "encoding/binary"

// MinFragNeededMTU is the smallest next-hop MTU of a fragmentation-needed
// error (RFC 1191) that is passed on to an inside client. Every IPv4 path
// carries 576 bytes (RFC 791), so a lower value (0 from pre-RFC 1191
// routers included) is either broken or an attack that would shrink the
// client's tunnel to nothing (RFC 5927 §7); it is dropped and counted.
const MinFragNeededMTU = 576

// ICMP types and codes of the policy (RFC 792, RFC 1191, RFC 1812).
const (
	policyDestUnreachable = 3
	policyTimeExceeded    = 11
	policyFragNeeded      = 4 // code of destination-unreachable
	policyOffCode         = 1 // RFC 792 "Code"
	policyOffMTU          = 6 // RFC 1191 "Next-Hop MTU"
	policyOffQuote        = 8 // the quoted IPv4 header
	policyOffTotalLen     = 2 // RFC 791 "Total Length", in the quote
	policyOffFlags        = 6 // RFC 791 "Flags", in the quote
	policyFlagDF          = 0x40
)

// ICMPPolicy decides on an ICMP error from outside about a call's GRE
// (quotedLen and quotedDF: the quoted IPv4 header's Total Length and DF
// bit): ReasonICMPIn when the inside end gets it (translated), otherwise
// the reason it is dropped. An inside client needs exactly two kinds: a
// fragmentation-needed with a sane MTU (its path MTU to the peer) and
// time-exceeded (a soft error for a raw socket). A fragmentation-needed
// is only plausible about a DF packet longer than the MTU it reports (RFC
// 1191 §4): pptp-linux ends its call on any fragmentation-needed (EMSGSIZE
// on its connected GRE socket; seen in the lab), so one that could not be
// genuine is dropped too. Every other
// destination-unreachable is fatal to the PPTP client's GRE socket (Linux
// raw_err: protocol and port unreachable, prohibited, precedence; pptp-linux
// and pptpd end the call on the read error) or useless to it (net and host
// unreachable: its control connection tells it the peer is gone), and
// anyone who can guess a Call ID can forge one.
func ICMPPolicy(typ, code uint8, mtu, quotedLen uint16, quotedDF bool) Reason {
	switch typ {
	case policyTimeExceeded:
		return ReasonICMPIn
	case policyDestUnreachable:
		switch code {
		case policyFragNeeded:
			switch {
			case mtu < MinFragNeededMTU:
				return ReasonICMPMTUTooSmall
			case !quotedDF || quotedLen <= mtu:
				return ReasonICMPFragNeededBogus
			}
			return ReasonICMPIn
		case 2, 3: // protocol, port
			return ReasonICMPProtoPortUnreachable
		case 9, 10, 13, 14, 15: // network/host administratively prohibited, communication prohibited, precedence
			return ReasonICMPProhibited
		}
		return ReasonICMPNetHostUnreachable // net, host, source route failed, unknown, isolated, TOS
	}
	return ReasonNotPPTP // not an error the rules queue
}

// icmpPolicyOf applies ICMPPolicy to an ICMP error whose quoted IPv4
// header icmpIn has checked.
func icmpPolicyOf(icmp []byte) Reason {
	q := icmp[policyOffQuote:]
	return ICMPPolicy(icmp[0], icmp[policyOffCode], binary.BigEndian.Uint16(icmp[policyOffMTU:]),
		binary.BigEndian.Uint16(q[policyOffTotalLen:]), q[policyOffFlags]&policyFlagDF != 0)
}
