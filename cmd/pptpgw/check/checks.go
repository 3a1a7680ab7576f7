package check

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pptpgw/pptpgw/nat/rules"
)

func checkCap(f *Facts) Result {
	if f.CapErr != "" {
		return warn("cannot read this process's capabilities: "+f.CapErr, "")
	}
	if f.CapEff&(1<<capNetAdmin) == 0 {
		return fail("this process lacks CAP_NET_ADMIN: iptables and the queues cannot be read, and `pptpgw run` could not bind its queues",
			"run as root (sudo pptpgw check), or give the process CAP_NET_ADMIN")
	}
	return ok("CAP_NET_ADMIN is in the effective set")
}

func checkForward(f *Facts) Result {
	s := f.IPForward
	switch {
	case !s.Present || s.Err != "":
		return warn("cannot read net.ipv4.ip_forward: "+s.Err, "")
	case s.Value == "1":
		return ok("net.ipv4.ip_forward = 1")
	}
	return fail("net.ipv4.ip_forward = "+s.Value+": the host does not route, so nothing reaches the outside",
		"sysctl -w net.ipv4.ip_forward=1, and put net.ipv4.ip_forward=1 in /etc/sysctl.d/pptpgw.conf")
}

// nftHelperRE finds nft ct helper objects and their type.
var (
	nftHelperRE    = regexp.MustCompile(`ct helper ("?[^\s{"]+"?) \{[^}]*type "pptp"`)
	nftHelperSetRE = regexp.MustCompile(`ct helper set "?([^\s"]+)"?`)
)

func checkHelper(f *Facts) Result {
	var found, fixes []string
	for _, fl := range []string{FlavourNFT, FlavourLegacy} {
		rs := f.ruleset(fl)
		if rs == nil {
			continue
		}
		lines, err := rules.HelperAttached(rs)
		if err != nil {
			continue
		}
		bin := "iptables-" + fl
		for _, l := range lines {
			found = append(found, bin+" "+l)
			fixes = append(fixes, bin+" "+strings.Replace(l, " -A ", " -D ", 1))
		}
	}
	if f.NFTRan && f.NFTErr == "" {
		used := map[string]bool{}
		for _, m := range nftHelperSetRE.FindAllStringSubmatch(f.NFT, -1) {
			used[m[1]] = true
		}
		for _, m := range nftHelperRE.FindAllStringSubmatch(f.NFT, -1) {
			name := strings.Trim(m[1], `"`)
			if used[name] {
				found = append(found, fmt.Sprintf("nft ct helper %q (type pptp) set by a rule", name))
				fixes = append(fixes, fmt.Sprintf("delete the rule with `ct helper set \"%s\"` (nft -a list ruleset; nft delete rule ... handle N)", name))
			}
		}
	}
	if len(found) == 0 {
		return ok("no `-j CT --helper pptp` rule and no nft ct helper of type pptp in use")
	}
	return fail("the kernel's own PPTP helper is attached: "+strings.Join(found, "; ")+
		"; it rewrites Call IDs too, and `pptpgw run` refuses to start", strings.Join(fixes, "; "))
}

func checkAutoAssign(f *Facts) Result {
	s := f.HelperAutoAssign
	switch {
	case !s.Present:
		return ok("net.netfilter.nf_conntrack_helper is not in this kernel: helpers are attached only by explicit rules")
	case s.Err != "":
		return warn("cannot read net.netfilter.nf_conntrack_helper: "+s.Err, "")
	case s.Value == "0":
		return ok("net.netfilter.nf_conntrack_helper = 0")
	}
	return fail("net.netfilter.nf_conntrack_helper = "+s.Value+
		": the kernel attaches its helpers by port, PPTP's to every connection to 1723 once nf_conntrack_pptp is loaded",
		"sysctl -w net.netfilter.nf_conntrack_helper=0, and put it in /etc/sysctl.d/pptpgw.conf")
}

// hasOurChains reports whether rs holds any pptpgw chain.
func hasOurChains(rs *Ruleset) bool {
	for _, t := range []string{rules.TableRaw, rules.TableMangle} {
		for _, c := range rs.Chains(t) {
			if strings.HasPrefix(c, rules.ChainPrefix) {
				return true
			}
		}
	}
	return false
}

const installFix = "pptpgw rules install, with the --config (or --queue, --queues, --fail-open, --mark-bit) that `pptpgw run` uses"

func checkRules(f *Facts) Result {
	rs, err := f.defaultRuleset()
	if err != "" {
		return fail("cannot read the iptables rules: "+err, "run as root; install iptables")
	}
	if !hasOurChains(rs) {
		return fail("pptpgw's rules are not installed (iptables-"+f.Default+"): control and GRE never reach the daemon",
			installFix)
	}
	diff, e := rules.Verify(rs, f.Rules)
	if e != nil {
		return fail("cannot compare the rules: "+e.Error(), "")
	}
	if len(diff) > 0 {
		return fail("pptpgw's rules differ from this configuration ("+strings.Join(diff, "; ")+"); `pptpgw run` refuses to start",
			"pptpgw rules remove && "+installFix)
	}
	ctl, _ := f.Rules.ControlQueues()
	gre, n := f.Rules.GREQueues()
	return ok(fmt.Sprintf("all %d rules in place (iptables-%s): control queue %s, GRE and ICMP queue %s",
		len(rules.Desired(f.Rules)), f.Default, queueRange(ctl, n), queueRange(gre, n)))
}

func queueRange(first, n uint16) string {
	if n <= 1 {
		return strconv.Itoa(int(first))
	}
	return fmt.Sprintf("%d-%d", first, int(first)+int(n)-1)
}

func checkFlavours(f *Facts) Result {
	if f.Default == "" {
		return warn("cannot tell which flavour `iptables` is: "+f.DefaultErr, "")
	}
	def, alt := f.ruleset(f.Default), f.ruleset(other(f.Default))
	altBin := "iptables-" + other(f.Default)
	if s := f.Saves[other(f.Default)]; s.Err != "" {
		return warn("cannot read "+altBin+": "+s.Err, "")
	}
	if alt == nil || alt.RuleCount() == 0 && !hasOurChains(alt) {
		return ok("only iptables-" + f.Default + " (what `iptables` drives) holds rules")
	}
	strip := altBin + "-save | grep -v PPTPGW | " + altBin + "-restore"
	switch {
	case hasOurChains(alt) && def != nil && hasOurChains(def):
		return fail("pptpgw's chains are in both iptables-legacy and iptables-nft: both sets run, and the "+altBin+
			" one, which `pptpgw run` neither checks nor removes, queues or drops packets on its own", strip)
	case hasOurChains(alt):
		return fail("pptpgw's chains are in "+altBin+", but `iptables` is iptables-"+f.Default+
			": `pptpgw run` does not see them and they may point at other queues", strip+"; then "+installFix)
	}
	var tables []string
	for _, t := range alt.Tables() {
		for _, c := range alt.Chains(t) {
			if len(alt.Rules(t, c)) > 0 {
				tables = append(tables, t)
				break
			}
		}
	}
	slices.Sort(tables)
	return warn(fmt.Sprintf("%s also holds %d rules (tables %s): both flavours run, and rules there (a NAT or a DROP) are invisible to `iptables -S`",
		altBin, alt.RuleCount(), strings.Join(tables, ", ")),
		"keep one flavour: move them ("+altBin+"-save > rules; edit; iptables-restore --noflush < rules) and flush the "+altBin+" tables")
}

func checkQueues(f *Facts) Result {
	if f.QueuesErr != "" {
		return fail("cannot read the queues: "+f.QueuesErr, "")
	}
	ctl, n := f.Rules.ControlQueues()
	bound := map[uint16]bool{}
	var drops []string
	for _, q := range f.Queues {
		bound[q.Queue] = true
		if d := uint64(q.QueueDropped) + uint64(q.UserDropped); d > 0 && q.Queue >= ctl && int(q.Queue) < int(ctl)+2*int(n) {
			drops = append(drops, fmt.Sprintf("queue %d dropped %d", q.Queue, d))
		}
	}
	var missing []string
	for q := int(ctl); q < int(ctl)+2*int(n); q++ {
		if !bound[uint16(q)] {
			missing = append(missing, strconv.Itoa(q))
		}
	}
	if len(missing) > 0 {
		return fail("no process is bound to queue(s) "+strings.Join(missing, ", ")+
			": pptpgw run is not running (or uses other queues), so queued control and GRE are dropped",
			"systemctl start pptpgw (or pptpgw run with the same --queue and --queues)")
	}
	if len(drops) > 0 {
		return warn("queues bound, but "+strings.Join(drops, ", ")+" packets (queue or socket buffer full)",
			"spread the load with --queues K (and `pptpgw rules install` with the same K)")
	}
	return ok(fmt.Sprintf("queues %s bound, no drops", queueRange(ctl, 2*n)))
}

// greCounter sums the packet counters of the GRE rules of chain.
func greCounter(rs *Ruleset, table, chain string) uint64 {
	var n uint64
	for _, r := range rs.Rules(table, chain) {
		if strings.Contains(r.Line, " -p gre ") || strings.Contains(r.Line, " -p 47 ") {
			n += r.Packets
		}
	}
	return n
}

var nftNATRE = regexp.MustCompile(`\b(masquerade|snat (ip )?to)\b`)

func checkNAT(f *Facts) Result {
	var where []string
	for _, fl := range []string{FlavourNFT, FlavourLegacy} {
		rs := f.ruleset(fl)
		if rs == nil {
			continue
		}
		for _, c := range rs.Chains("nat") {
			for _, r := range rs.Rules("nat", c) {
				if strings.Contains(r.Line, "-j MASQUERADE") || strings.Contains(r.Line, "-j SNAT") {
					where = append(where, "iptables-"+fl+" "+r.Line)
				}
			}
		}
	}
	if len(where) == 0 && f.NFTRan && nftNATRE.MatchString(f.NFT) {
		where = append(where, "nft: "+nftNATRE.FindString(f.NFT))
	}
	if len(where) == 0 {
		return warn("no MASQUERADE or SNAT rule: pptpgw does not do the TCP NAT, so without one the calls pass untranslated (identity)",
			"iptables -t nat -A POSTROUTING -o OUTSIDE_IF -j MASQUERADE (or SNAT --to-source PUBLIC_IP)")
	}
	return ok("source NAT on the way out: " + where[0])
}

// effective is the rp_filter mode of an interface: the higher of "all" and its own.
func effective(f *Facts, name string) int {
	v := func(s Sysctl) int {
		n, _ := strconv.Atoi(s.Value)
		return n
	}
	return max(v(f.RPFilter["all"]), v(f.RPFilter[name]))
}

func checkRPFilter(f *Facts) Result {
	var strict, parts []string
	for _, ifc := range f.DefaultRoutes {
		e := effective(f, ifc)
		parts = append(parts, fmt.Sprintf("%s=%d", ifc, e))
		if e == 1 {
			strict = append(strict, ifc)
		}
	}
	if len(f.DefaultRoutes) == 0 {
		return ok(fmt.Sprintf("no default route; rp_filter all=%d", effective(f, "all")))
	}
	if len(strict) > 0 && len(f.DefaultRoutes) > 1 {
		return warn("strict reverse-path filtering on "+strings.Join(strict, ", ")+" with several default routes: GRE, ICMP or control "+
			"packets arriving on another link than the route back to their source are dropped without a trace",
			"use loose mode: sysctl -w net.ipv4.conf.all.rp_filter=2 (and per interface), in /etc/sysctl.d/pptpgw.conf")
	}
	return ok("rp_filter on the outside: " + strings.Join(parts, ", ") + " (0 off, 1 strict, 2 loose)")
}

// pptpOverhead is what PPTP adds around a PPP payload of MTU bytes, with
// nothing compressed: outer IPv4 20, enhanced GRE with sequence and
// acknowledgment numbers 16, PPP address/control 2 and protocol 2, MPPE's
// header 2 and the encrypted inner protocol 2.
const pptpOverhead = 20 + 16 + 2 + 2 + 2 + 2

// typicalPPPMTU is the PPP MTU PPTP deployments use (pptpd's documentation
// recommends it for Windows clients).
const typicalPPPMTU = 1400

func checkMTU(f *Facts) Result {
	if f.LinksErr != "" {
		return warn("cannot list interfaces: "+f.LinksErr, "")
	}
	if len(f.DefaultRoutes) == 0 {
		return warn("no IPv4 default route: cannot tell the outside interface", "")
	}
	var low, parts []string
	for _, name := range f.DefaultRoutes {
		i := slices.IndexFunc(f.Links, func(l Link) bool { return l.Name == name })
		if i < 0 {
			continue
		}
		mtu := f.Links[i].MTU
		parts = append(parts, fmt.Sprintf("%s MTU %d: PPP MTU up to %d fits", name, mtu, mtu-pptpOverhead))
		if mtu-pptpOverhead < typicalPPPMTU {
			low = append(low, fmt.Sprintf("%s MTU %d leaves a PPP MTU of %d, below the usual %d", name, mtu, mtu-pptpOverhead, typicalPPPMTU))
		}
	}
	if len(low) > 0 {
		return warn(strings.Join(low, "; ")+": full-size tunnel packets rely on ICMP fragmentation-needed reaching the clients (pptpgw translates it)",
			"set `mtu N` and `mru N` (N = outside MTU - 44) in the PPP options of the PPTP endpoints, and clamp TCP MSS on their ppp interfaces")
	}
	return ok(strings.Join(parts, "; "))
}

// ruleset parses a flavour's tables; nil when it was not read or failed.
func (f *Facts) ruleset(flavour string) *Ruleset {
	s, found := f.Saves[flavour]
	if !found || !s.Ran || s.Err != "" {
		return nil
	}
	rs, err := ParseSave(s.Text)
	if err != nil {
		return nil
	}
	return rs
}

// defaultRuleset parses the tables of the flavour pptpgw installs with.
func (f *Facts) defaultRuleset() (*Ruleset, string) {
	if f.Default == "" {
		return nil, "`iptables -V` failed: " + f.DefaultErr
	}
	s := f.Saves[f.Default]
	if s.Err != "" {
		return nil, s.Err
	}
	if !s.Ran {
		return &Ruleset{}, "" // no tables
	}
	rs, err := ParseSave(s.Text)
	if err != nil {
		return nil, err.Error()
	}
	return rs, ""
}

// checkBPF says whether the tc-eBPF GRE path can run here, and what is
// missing when it cannot: a failure when --gre-path bpf asks for it, a
// warning when auto falls back to nf_tables.
func checkBPF(f *Facts) Result {
	switch f.GREPath {
	case "kernel", "queue":
		return ok("not used (--gre-path " + f.GREPath + ")")
	}
	r := f.BPF
	if r == nil {
		return warn("not probed", "")
	}
	if r.OK() {
		mode := "cls_bpf on clsact"
		if r.TCX {
			mode = "tcx"
		}
		return ok(fmt.Sprintf("the program loads here (kernel %s, attached with %s)", r.Kernel, mode))
	}
	fix := "kernel 5.10 or later, CAP_BPF and CAP_NET_ADMIN (CAP_SYS_ADMIN before 5.8), net.core.bpf_jit_enable = 1, bpffs on /sys/fs/bpf"
	if f.GREPath == "bpf" {
		return fail("--gre-path bpf cannot run: "+r.Reason(), fix)
	}
	return warn("--gre-path auto takes nf_tables instead of bpf: "+r.Reason(), fix)
}
