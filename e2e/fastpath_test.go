//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// greQueueCount returns the packets counted so far by the GRE v1 NFQUEUE
// rule of pptpgw's chain (raw PPTPGW-GRE-IN or mangle PPTPGW-GRE-OUT).
func greQueueCount(t *testing.T, ns *lab.NS, table, chain string) uint64 {
	t.Helper()
	out := ns.MustRun("iptables", "-t", table, "-L", chain, "-v", "-n", "-x")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == "NFQUEUE" && (f[3] == "47" || f[3] == "gre") {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("iptables -L %s: %q: %v", chain, line, err)
			}
			return n
		}
	}
	t.Fatalf("no GRE NFQUEUE rule in %s %s:\n%s", table, chain, out)
	return 0
}

// nftMap returns `nft list map ip pptpgw NAME` (or `list set`).
func nftMap(ns *lab.NS, name string) (string, error) {
	kind := "map"
	if name == "out_calls" {
		kind = "set"
	}
	return ns.Run("nft", "list", kind, "ip", "pptpgw", name)
}

// mapped checks that the kernel fast path's maps hold call c (want) or
// not (!want).
func mapped(ns *lab.NS, c lab.GWCall, want bool) error {
	for _, m := range []struct{ name, elem string }{
		{"in_addr", fmt.Sprintf("%s . %s . %d counter packets", c.PeerAddr, c.PublicAddr, c.OuterCallID)},
		{"in_addr", fmt.Sprintf(": %s", c.InsideAddr)},
		{"in_callid", fmt.Sprintf("%s . %s . %d : %d", c.PeerAddr, c.PublicAddr, c.OuterCallID, c.InsideCallID)},
		{"out_addr", fmt.Sprintf("%s . %s . %d : %s", c.InsideAddr, c.PeerAddr, c.PeerCallID, c.PublicAddr)},
		{"out_calls", fmt.Sprintf("%s . %s . %d counter packets", c.InsideAddr, c.PeerAddr, c.PeerCallID)},
	} {
		out, err := nftMap(ns, m.name)
		if err != nil {
			return err
		}
		if strings.Contains(out, m.elem) != want {
			return fmt.Errorf("call %s: map %s has %q: %v, want %v:\n%s", c.ID, m.name, m.elem, !want, want, out)
		}
	}
	return nil
}

// TestGWKernelPath: two pptp-linux clients through pptpgw with --gre-path
// kernel and persistent rules. While the calls are up, the maps of the
// table `ip pptpgw` hold them, LCP echoes cross both ways, and the GRE
// NFQUEUE rules count nothing more: the kernel translated every packet,
// and its element counters still reach the calls' counters. A call
// cleared by its client leaves the maps; the table outlives the daemon
// (persistent rules), is re-synced from the state file by a restart, and
// `pptpgw rules remove` removes it.
func TestGWKernelPath(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 2)
	l := tp.l
	tp.gw.MustPptpgw("rules", "install")
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", "kernel"}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	ends, clients := tp.startClients()
	waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 1, 20*time.Second)
	calls := waitCalls(l, gw, 2, distinctOuter, 5*time.Second)
	for _, c := range calls {
		l.MustWaitFor("call "+c.ID+" in the nft maps", func() error { return mapped(tp.gw, c, true) }, 5*time.Second)
	}
	inBefore := greQueueCount(t, tp.gw, "raw", "PPTPGW-GRE-IN")
	outBefore := greQueueCount(t, tp.gw, "mangle", "PPTPGW-GRE-OUT")
	statsBefore := gw.MustStats()
	p, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	waitRising(l, "echo replies rising on both ends with the calls in the kernel", ends, srv, p, 10*time.Second)
	if in, out := greQueueCount(t, tp.gw, "raw", "PPTPGW-GRE-IN"), greQueueCount(t, tp.gw, "mangle", "PPTPGW-GRE-OUT"); in != inBefore || out != outBefore {
		t.Errorf("GRE reached the queues with the calls mapped: GRE-IN %d -> %d, GRE-OUT %d -> %d", inBefore, in, outBefore, out)
	}
	st := gw.MustStats()
	for _, k := range []string{"gre_in", "gre_out"} {
		if st[k] != statsBefore[k] {
			t.Errorf("stats %s %d -> %d with the calls mapped", k, statsBefore[k], st[k])
		}
	}
	if st["gre_kernel_calls"] != 2 || st["gre_kernel_errors"] != 0 {
		t.Errorf("stats gre_kernel_calls %d, gre_kernel_errors %d; want 2, 0", st["gre_kernel_calls"], st["gre_kernel_errors"])
	}
	l.MustWaitFor("kernel counts in stats", func() error {
		s := gw.MustStats()
		if s["gre_kernel_in"] <= statsBefore["gre_kernel_in"] || s["gre_kernel_out"] <= statsBefore["gre_kernel_out"] {
			return fmt.Errorf("gre_kernel_in %d, gre_kernel_out %d", s["gre_kernel_in"], s["gre_kernel_out"])
		}
		return nil
	}, 5*time.Second)
	waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	healthy(t, gw.MustStats())

	// pptp-linux on SIGTERM clears its call: the call leaves the maps,
	// the other stays.
	gone, kept := callFrom(t, calls, clientIP(0)), callFrom(t, calls, clientIP(1))
	clients[0].PPTP.Signal(syscall.SIGTERM)
	callGone(l, gw, clientIP(0), 5*time.Second)
	l.MustWaitFor("call "+gone.ID+" out of the nft maps", func() error { return mapped(tp.gw, gone, false) }, 3*time.Second)
	if err := mapped(tp.gw, kept, true); err != nil {
		t.Error(err)
	}

	// Persistent rules: the table stays after the daemon; rules remove
	// removes it with the iptables rules.
	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw stop: %v", err)
	}
	if err := mapped(tp.gw, kept, true); err != nil {
		t.Errorf("after the daemon stopped: %v", err)
	}
	// A restart re-syncs the table from the state file.
	gw.Restart()
	l.MustWaitFor("the kept call back in the fast path after a restart", func() error {
		if err := mapped(tp.gw, kept, true); err != nil {
			return err
		}
		if err := mapped(tp.gw, gone, false); err != nil {
			return err
		}
		if n := gw.MustStats()["gre_kernel_calls"]; n != 1 {
			return fmt.Errorf("gre_kernel_calls %d, want 1", n)
		}
		return nil
	}, 5*time.Second)
	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw stop: %v", err)
	}
	tp.gw.MustPptpgw("rules", "remove")
	if out := tp.gw.MustRun("nft", "list", "tables"); strings.Contains(out, "pptpgw") {
		t.Errorf("table ip pptpgw left after rules remove:\n%s", out)
	}
}
