package nat

// Verdict is what the packet path tells the queue to do with a packet.
type Verdict uint8

const (
	Accept         Verdict = iota // pass unchanged
	AcceptModified                // pass the rewritten packet (and set the mark)
	Drop
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case AcceptModified:
		return "accept-modified"
	case Drop:
		return "drop"
	}
	return "invalid"
}

// Reason says why a packet got its verdict; each is counted.
type Reason uint8

const (
	ReasonControl          Reason = iota // a control segment of a tracked connection
	ReasonControlUntracked               // a control segment the resolver could not place yet
	ReasonControlGap                     // beyond a gap in the sequence space (TCP resends it)
	ReasonGREIn                          // GRE translated towards the inside end
	ReasonGREOut                         // GRE translated towards the peer
	ReasonGREIdentity                    // GRE of a call the kernel does not NAT
	ReasonGRELocal                       // GRE v1 of no tracked call to or from the router, passed by --local-gre accept
	ReasonUnknownCall                    // GRE v1 for no known call
	ReasonRefusedCall                    // GRE of a refused or cleared call
	ReasonMalformedGRE                   // GRE v1 with wrong flags, protocol or a truncated header
	ReasonNotPPTPGRE                     // GRE of another version (v0 tunnels)
	ReasonNotIPv4                        // IPv6 or garbage
	ReasonFragment                       // an IPv4 fragment
	ReasonNotPPTP                        // neither TCP 1723 nor GRE
	ReasonTruncated                      // headers cut short
	ReasonICMPIn                         // an ICMP error about GRE translated towards the inside end
	ReasonICMPUnknownCall                // an ICMP error quoting GRE v1 of no translated call: passed untouched
	ReasonControlDenied                  // a new control connection the policy does not allow (--allow-inside, --allow-peer)

	// Silence towards PPTP peers: what is dropped so that nothing ends a call.
	ReasonGREVersion               // GRE to a local address of a version that does not exist (2-7)
	ReasonGREProtocol              // GRE v1 to a local address carrying something else than PPP
	ReasonICMPNetHostUnreachable   // net/host unreachable (or unknown, isolated, TOS, source route) about a call's GRE
	ReasonICMPProtoPortUnreachable // protocol/port unreachable about a call's GRE
	ReasonICMPProhibited           // administratively prohibited (or precedence) about a call's GRE
	ReasonICMPMTUTooSmall          // fragmentation-needed with a next-hop MTU below MinFragNeededMTU
	ReasonICMPFragNeededBogus      // fragmentation-needed about a packet without DF or not longer than the MTU
	reasonCount
)

var reasonNames = [...]string{"control", "control_untracked", "control_out_of_order", "gre_in", "gre_out",
	"gre_identity", "gre_local", "unknown_call", "refused_call", "malformed_gre", "not_pptp_gre",
	"not_ipv4", "fragment", "not_pptp", "truncated", "icmp_in", "icmp_unknown_call",
	"control_denied", "gre_version", "gre_protocol", "icmp_net_host_unreachable", "icmp_proto_port_unreachable",
	"icmp_prohibited", "icmp_mtu_too_small", "icmp_frag_needed_bogus"}

func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "invalid"
}

// Reasons lists every reason, for metrics.
func Reasons() []Reason {
	rs := make([]Reason, reasonCount)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}
