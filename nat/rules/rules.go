// Package rules owns pptpgw's iptables rules (DESIGN.md "The data path",
// §2 and §3): the chains of pptpgw's own, one jump into each from a
// built-in chain, and the queue numbers and mark bit that tie them to the
// daemon's NFQUEUE sockets.
//
// The rules are data (Desired); Install, Remove, Verify and Show compare
// that data with what `iptables -S` prints. Every operation is
// check-then-act through the iptables binary and therefore not atomic:
// callers must not run two of them at once on one host.
package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Tables pptpgw touches.
const (
	TableMangle = "mangle"
	TableRaw    = "raw"
)

// pptpgw's own chains (DESIGN.md §3).
const (
	ChainCTL     = "PPTPGW-CTL"     // mangle FORWARD: TCP 1723 to the control queues
	ChainNoTrack = "PPTPGW-NOTRACK" // raw PREROUTING, first: GRE v1 (and ICMP errors quoting GRE) out of conntrack
	ChainGREIn   = "PPTPGW-GRE-IN"  // raw PREROUTING, second: inbound GRE v1 to the GRE queues
	ChainGREOut  = "PPTPGW-GRE-OUT" // mangle POSTROUTING: outbound GRE v1 to the GRE queues
	ChainSilence = "PPTPGW-SILENCE" // raw OUTPUT: no ICMP error the router makes about GRE that could end a call
	// The router's own control connections (its pptp, its pptpd): TCP
	// 1723 to the control queues, tracked and never NATed, so that exactly
	// their GRE is let in and out.
	ChainCTLOut = "PPTPGW-CTL-OUT" // mangle OUTPUT: from the router
	ChainCTLIn  = "PPTPGW-CTL-IN"  // mangle INPUT: to the router
)

// ChainPrefix starts the name of every chain pptpgw owns.
const ChainPrefix = "PPTPGW-"

// DefaultMarkBit is the skb mark bit set on every GRE packet pptpgw
// translated (by the GRE-in verdict or the kernel fast path) so that the
// GRE chains skip it (--mark-bit).
const DefaultMarkBit = 0x10000000

// U32 expressions, verbatim from DESIGN.md / LAB.md (both checked on this
// kernel). iptables prints them back in hex ("0x0>>0x16&0x3c..."); the
// comparison in Verify canonicalises both forms.
const (
	// U32GREv1 matches GRE version 1 carrying PPP (0x880B): PPTP's GRE
	// and nothing else, so GRE v0 tunnels keep the kernel's conntrack/NAT.
	U32GREv1 = "0>>22&0x3C@0>>16&0x7=1&&0>>22&0x3C@0&0xFFFF=0x880B"
	// U32ICMPQuotingGRE matches ICMP destination-unreachable (3) and
	// time-exceeded (11) whose quoted IP header says protocol 47.
	U32ICMPQuotingGRE = "0>>22&0x3C@0>>24=3,11&&0>>22&0x3C@16>>16&0xFF=47"
	// U32ICMPFatalQuotingGRE matches the ICMP errors (type<<8|code) that
	// a raw GRE socket takes as fatal (Linux raw_err, icmp_err_convert:
	// pptpd and pptp-linux end the call on the read error), quoting GRE:
	// destination-unreachable except fragmentation-needed, and
	// parameter-problem. Fragmentation-needed and time-exceeded stay: the
	// router sends them only about GRE it forwards (an inside client's
	// path MTU), or, for time-exceeded, as a soft error.
	U32ICMPFatalQuotingGRE = "0>>22&0x3C@0>>16=0x300:0x303,0x305:0x3FF,0xC00:0xCFF&&0>>22&0x3C@16>>16&0xFF=47"
)

// Config is the part of pptpgw's configuration the rules depend on.
type Config struct {
	// Queue is the first control queue (--queue N).
	Queue uint16
	// Queues is the number of control queues (--queues K, 0 means 1). The
	// GRE and ICMP rules use the next K queues: N+K..N+2K-1.
	Queues uint16
	// FailOpen adds --queue-bypass to the control rules only; GRE rules
	// stay fail-closed (LAB.md: GRE reaching the router's stack kills calls).
	FailOpen bool
	// MarkBit is --mark-bit (0 means DefaultMarkBit).
	MarkBit uint32
}

func (c Config) withDefaults() Config {
	if c.Queues == 0 {
		c.Queues = 1
	}
	if c.MarkBit == 0 {
		c.MarkBit = DefaultMarkBit
	}
	return c
}

// Layout is the configuration's queue numbering.
func (c Config) Layout() Layout { return Layout{First: c.Queue, N: c.Queues} }

// Validate reports a configuration whose queue range does not fit in the
// kernel's 16-bit queue numbers.
func (c Config) Validate() error {
	if l := c.Layout(); !l.Fits() {
		return fmt.Errorf("queues %d..%d: beyond 65535", l.First, int(l.First)+2*int(l.n())-1)
	}
	return nil
}

// ControlQueues returns the first control queue and their number.
func (c Config) ControlQueues() (first, n uint16) { return c.Layout().Control() }

// GREQueues returns the first GRE/ICMP queue and their number.
func (c Config) GREQueues() (first, n uint16) { return c.Layout().GRE() }

// Chain is one of pptpgw's chains and the built-in chain that jumps to it.
type Chain struct {
	Table string
	Name  string
	// From is the built-in chain holding the one jump into Name.
	From string
}

// Chains lists pptpgw's chains in installation order. The two raw
// PREROUTING jumps must stay in this order: a packet the queue accepts
// leaves the raw table, so the notrack rules have to come first.
func Chains() []Chain {
	return []Chain{
		{TableRaw, ChainNoTrack, "PREROUTING"},
		{TableRaw, ChainGREIn, "PREROUTING"},
		{TableRaw, ChainSilence, "OUTPUT"},
		{TableMangle, ChainCTL, "FORWARD"},
		{TableMangle, ChainGREOut, "POSTROUTING"},
		{TableMangle, ChainCTLOut, "OUTPUT"},
		{TableMangle, ChainCTLIn, "INPUT"},
	}
}

// Rule is one iptables rule: Spec is what follows `-t Table -A Chain`.
type Rule struct {
	Table string
	Chain string
	Spec  []string
}

// String renders the rule as an iptables command line tail, quoting
// arguments the way iptables-save does.
func (r Rule) String() string {
	return "-t " + r.Table + " -A " + r.Chain + " " + joinSpec(r.Spec)
}

// IsJump reports whether the rule is a jump from a built-in chain into
// one of pptpgw's chains.
func (r Rule) IsJump() bool {
	return !strings.HasPrefix(r.Chain, ChainPrefix)
}

// Desired returns every rule pptpgw needs for cfg: the contents of its
// chains, in chain order, then the jumps into them. Installing them in
// this order means no packet is ever sent into a half-filled chain.
func Desired(cfg Config) []Rule {
	cfg = cfg.withDefaults()
	ctlFirst, n := cfg.ControlQueues()
	greFirst, _ := cfg.GREQueues()
	ctl := queueTarget(ctlFirst, n, cfg.FailOpen)
	gre := queueTarget(greFirst, n, false)
	greBypass := queueTarget(greFirst, n, true)
	greMatch := []string{"-p", "gre", "-m", "u32", "--u32", U32GREv1}
	icmpMatch := []string{"-p", "icmp", "-m", "u32", "--u32", U32ICMPQuotingGRE}
	local := []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	notrack := []string{"-j", "CT", "--notrack"}
	mark := fmt.Sprintf("0x%x/0x%x", cfg.MarkBit, cfg.MarkBit)

	rs := []Rule{
		{TableRaw, ChainNoTrack, cat(greMatch, notrack)},
		// A translated ICMP error would be conntrack-INVALID (DESIGN.md §2).
		{TableRaw, ChainNoTrack, cat(icmpMatch, local, notrack)},
		// Never bypass: GRE hitting the router's stack gets ICMP
		// protocol-unreachable and the peer drops the call.
		{TableRaw, ChainGREIn, cat(greMatch, local, gre)},
		// Bypass: if the daemon is down, errors reach the router untouched.
		{TableRaw, ChainGREIn, cat(icmpMatch, local, greBypass)},
		// Every other GRE to a local address (other versions, flags,
		// protocols, cut headers) is classified and counted by the daemon,
		// which drops all but GRE v0 (ip_gre tunnels). Bypass: while the
		// daemon is down it reaches the stack, and PPTPGW-SILENCE keeps
		// the stack's answer from reaching the peer.
		{TableRaw, ChainGREIn, cat([]string{"-p", "gre"}, local, greBypass)},
		// The router's own stack never tells a PPTP peer that GRE is
		// unwelcome: one such error ends every call with that peer.
		{TableRaw, ChainSilence, cat([]string{"-p", "icmp", "-m", "u32", "--u32", U32ICMPFatalQuotingGRE}, []string{"-j", "DROP"})},
		{TableMangle, ChainCTL, cat([]string{"-p", "tcp", "-m", "tcp", "--sport", "1723"}, ctl)},
		{TableMangle, ChainCTL, cat([]string{"-p", "tcp", "-m", "tcp", "--dport", "1723"}, ctl)},
		{TableMangle, ChainGREOut, cat(greMatch, gre)},
	}
	for _, c := range []string{ChainCTLOut, ChainCTLIn} {
		for _, port := range []string{"--sport", "--dport"} {
			rs = append(rs, Rule{TableMangle, c, cat([]string{"-p", "tcp", "-m", "tcp", port, "1723"}, ctl)})
		}
	}
	// Packets already translated (by the GRE-in verdict, or by the kernel
	// fast path before the raw table) carry the mark and skip every GRE
	// chain: one mark test instead of their u32 and addrtype matches.
	skip := []string{"-m", "mark", "!", "--mark", mark}
	for _, c := range Chains() {
		spec := skip
		switch c.Name {
		case ChainCTL:
			spec = []string{"-p", "tcp"} // GRE need not look at the control rules
		case ChainSilence:
			spec = []string{"-p", "icmp"}
		case ChainCTLOut:
			// Not loopback: a segment over lo would be queued twice
			// (OUTPUT, then INPUT).
			spec = []string{"!", "-o", "lo", "-p", "tcp"}
		case ChainCTLIn:
			spec = []string{"!", "-i", "lo", "-p", "tcp"}
		}
		rs = append(rs, Rule{c.Table, c.From, cat(spec, []string{"-j", c.Name})})
	}
	return rs
}

// queueTarget is the NFQUEUE target for n queues from first.
func queueTarget(first, n uint16, bypass bool) []string {
	t := []string{"-j", "NFQUEUE"}
	if n > 1 {
		t = append(t, "--queue-balance", fmt.Sprintf("%d:%d", first, int(first)+int(n)-1))
	} else {
		t = append(t, "--queue-num", strconv.Itoa(int(first)))
	}
	if bypass {
		t = append(t, "--queue-bypass")
	}
	return t
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ErrMismatch is returned by Install when pptpgw's chains hold rules that
// the configuration does not want (another queue number, a stale rule):
// Install only adds, so the caller must Remove first to replace them.
var ErrMismatch = errors.New("installed pptpgw rules differ from the configuration")
