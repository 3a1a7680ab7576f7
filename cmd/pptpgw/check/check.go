// Package check is `pptpgw check`: what is wrong with this host's setup
// for pptpgw. Gather collects facts (sysctls, both iptables flavours'
// tables, the nft ruleset, the queues, interfaces and routes, the
// process's capabilities); Run judges them with pure functions, one per
// check, so every verdict is unit-tested without root.
package check

import (
	"slices"

	"github.com/pptpgw/pptpgw/nat/bpf"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// Status is a check's verdict.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check: its name, verdict, what was found and how to fix it
// (empty when there is nothing to fix). The JSON form is the contract of
// `pptpgw check --json` (DESIGN.md "Command line").
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Iptables flavours.
const (
	FlavourNFT    = "nft"
	FlavourLegacy = "legacy"
)

// Sysctl is a sysctl's value as read from /proc/sys.
type Sysctl struct {
	Value   string // trimmed
	Present bool   // the file exists (some sysctls exist only in some kernels)
	Err     string // reading failed for another reason
}

// Save is one iptables flavour's `iptables-save -c` output.
type Save struct {
	Ran  bool   // the flavour was read; false: its binary is missing, or (legacy) no table is loaded
	Text string // the output
	Err  string // running it failed
}

// Link is a network interface.
type Link struct {
	Name string
	MTU  int
	Up   bool
}

// Facts is everything the checks look at, gathered once.
type Facts struct {
	// Rules is the configuration whose rules are expected.
	Rules rules.Config
	// CapEff is the effective capability set of this process; CapErr is
	// set when it could not be read.
	CapEff uint64
	CapErr string
	// IPForward is net.ipv4.ip_forward; HelperAutoAssign is
	// net.netfilter.nf_conntrack_helper (gone since Linux 6.0).
	IPForward        Sysctl
	HelperAutoAssign Sysctl
	// Default is the flavour plain `iptables` drives (FlavourNFT or
	// FlavourLegacy), the one pptpgw installs with; DefaultErr is set when
	// `iptables -V` failed.
	Default    string
	DefaultErr string
	// Saves holds each flavour's tables, by FlavourNFT and FlavourLegacy.
	Saves map[string]Save
	// NFT is `nft list ruleset` (for ct helper objects and native NAT);
	// NFTRan is false when nft is not installed.
	NFT    string
	NFTRan bool
	NFTErr string
	// Queues are the bound NFQUEUE queues of this network namespace.
	Queues    []nfq.QueueStats
	QueuesErr string
	// RPFilter is net.ipv4.conf.NAME.rp_filter for "all" and every link.
	RPFilter map[string]Sysctl
	// DefaultRoutes are the interfaces of the IPv4 default routes: the
	// outside interfaces.
	DefaultRoutes []string
	Links         []Link
	LinksErr      string
	// GREPath is --gre-path; BPF is what the bpf path needs here and what
	// is missing (nat/bpf.Probe), read unless GREPath is kernel or queue.
	GREPath string
	BPF     *bpf.Report
	// Paths are the kernel fast paths' counters (paths.go); Daemon is
	// what the running daemon says on its admin socket (daemon.go).
	Paths  FastPaths
	Daemon DaemonFacts
}

// capNetAdmin is CAP_NET_ADMIN's bit (linux/capability.h).
const capNetAdmin = 12

// checks in the order they are printed: the ones that explain later
// failures first.
var checks = []struct {
	name string
	run  func(f *Facts) Result
}{
	{"cap-net-admin", checkCap},
	{"ip-forward", checkForward},
	{"kernel-helper", checkHelper},
	{"helper-autoassign", checkAutoAssign},
	{"rules", checkRules},
	{"iptables-flavours", checkFlavours},
	{"queues", checkQueues},
	{"gre-arriving", checkGREArriving},
	{"nat-rule", checkNAT},
	{"rp-filter", checkRPFilter},
	{"outside-mtu", checkMTU},
	{"gre-path-bpf", checkBPF},
	{"rules-running", checkRulesRunning}, // daemon.go
	{"replication", checkReplication},
}

// Names lists the checks in order.
func Names() []string {
	out := make([]string, len(checks))
	for i, c := range checks {
		out[i] = c.name
	}
	return out
}

// Run judges f: one result per check, in order.
func Run(f *Facts) []Result {
	out := make([]Result, len(checks))
	for i, c := range checks {
		r := c.run(f)
		r.Name = c.name
		out[i] = r
	}
	return out
}

// Failed reports whether any result failed (exit status 1).
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == Fail })
}

func ok(detail string) Result        { return Result{Status: OK, Detail: detail} }
func warn(detail, fix string) Result { return Result{Status: Warn, Detail: detail, Fix: fix} }
func fail(detail, fix string) Result { return Result{Status: Fail, Detail: detail, Fix: fix} }
func other(flavour string) string {
	if flavour == FlavourLegacy {
		return FlavourNFT
	}
	return FlavourLegacy
}
