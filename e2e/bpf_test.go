//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// TestGWBPFPath: two pptp-linux clients through pptpgw with --gre-path
// bpf. Once the calls are up the tc-eBPF program translates their GRE both
// ways: LCP echoes cross, nothing reaches the GRE queues or nf_tables
// behind it, the program's per-call counters reach the calls, and the
// packets arrive with their TTL decremented by one. A call cleared by its
// client leaves the maps; the programs and maps outlive the daemon (its
// GRE keeps flowing while it is down), a restart re-syncs them, and
// `pptpgw rules remove` removes them.
func TestGWBPFPath(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 2)
	l := tp.l
	tp.gw.MustPptpgw("rules", "install")
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", "bpf"}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	ends, clients := tp.startClients()
	waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 1, 20*time.Second)
	calls := waitCalls(l, gw, 2, distinctOuter, 5*time.Second)
	bpfCalls := func(want uint64) func() error {
		return func() error {
			if n := gw.MustStats()["gre_bpf_calls"]; n != want {
				return fmt.Errorf("gre_bpf_calls %d, want %d", n, want)
			}
			return nil
		}
	}
	l.MustWaitFor("both calls in the bpf maps", bpfCalls(2), 5*time.Second)
	if st := gw.MustStats(); st["gre_path_bpf"] != 1 || st["gre_bpf_errors"] != 0 {
		t.Errorf("stats gre_path_bpf %d gre_bpf_errors %d, want 1, 0", st["gre_path_bpf"], st["gre_bpf_errors"])
	}

	inBefore := greQueueCount(t, tp.gw, "raw", "PPTPGW-GRE-IN")
	outBefore := greQueueCount(t, tp.gw, "mangle", "PPTPGW-GRE-OUT")
	before := gw.MustStats()
	capture := tp.clients[0].Capture("cap-client1", "eth0", "ip proto 47")
	p, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	waitRising(l, "echo replies rising on both ends with the calls in the bpf maps", ends, srv, p, 10*time.Second)
	pcap := capture.Stop()
	if in, out := greQueueCount(t, tp.gw, "raw", "PPTPGW-GRE-IN"), greQueueCount(t, tp.gw, "mangle", "PPTPGW-GRE-OUT"); in != inBefore || out != outBefore {
		t.Errorf("GRE reached the queues with the calls mapped: GRE-IN %d -> %d, GRE-OUT %d -> %d", inBefore, in, outBefore, out)
	}
	st := gw.MustStats()
	// The clients are on a bridge (with br_netfilter, as here): the
	// program on its ports takes their GRE before netfilter sees it.
	for _, k := range []string{"gre_in", "gre_out", "gre_kernel_in", "gre_kernel_out"} {
		if st[k] != before[k] {
			t.Errorf("stats %s %d -> %d with the calls in the bpf maps", k, before[k], st[k])
		}
	}
	l.MustWaitFor("bpf counts in stats", func() error {
		s := gw.MustStats()
		if s["gre_bpf_in"] <= before["gre_bpf_in"] || s["gre_bpf_out"] <= before["gre_bpf_out"] {
			return fmt.Errorf("gre_bpf_in %d, gre_bpf_out %d", s["gre_bpf_in"], s["gre_bpf_out"])
		}
		return nil
	}, 5*time.Second)
	waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	// pptpd sends with TTL 64: one hop, decremented by the program.
	from := "ip proto 47 and src host " + serverIP
	if n, err := lab.CountPackets(pcap, from+" and ip[8] = 63"); err != nil || n == 0 {
		t.Errorf("GRE from the server with TTL 63 at the client: %d (%v)", n, err)
	}
	if n, err := lab.CountPackets(pcap, from+" and ip[8] != 63"); err != nil || n != 0 {
		t.Errorf("GRE from the server with another TTL at the client: %d (%v)", n, err)
	}

	gone, kept := callFrom(t, calls, clientIP(0)), callFrom(t, calls, clientIP(1))
	clients[0].PPTP.Signal(syscall.SIGTERM)
	callGone(l, gw, clientIP(0), 5*time.Second)
	l.MustWaitFor("call "+gone.ID+" out of the bpf maps", bpfCalls(1), 3*time.Second)

	// Persistent: with the daemon stopped, the kept call's GRE still
	// crosses (the queues would drop it, fail-closed).
	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw stop: %v", err)
	}
	if _, err := os.Stat(tp.gw.BPFPinDir()); err != nil {
		t.Errorf("pins gone with the daemon: %v", err)
	}
	keptEnds := ends[1:]
	p, err = pairsOf(keptEnds, srv)
	if err != nil {
		t.Fatal(err)
	}
	waitRising(l, "echo replies rising with the daemon stopped", keptEnds, srv, p, 10*time.Second)
	gw.Restart()
	l.MustWaitFor("the kept call back in the bpf maps after a restart", bpfCalls(1), 5*time.Second)
	if calls := waitCalls(l, gw, 1, nil, 5*time.Second); calls[0].ID != kept.ID {
		t.Errorf("after the restart: %s, want %s", calls[0].ID, kept.ID)
	}
	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw stop: %v", err)
	}
	tp.gw.MustPptpgw("rules", "remove")
	if _, err := os.Stat(tp.gw.BPFPinDir()); !os.IsNotExist(err) {
		t.Errorf("pin directory left after rules remove: %v", err)
	}
	p, err = pairsOf(keptEnds, srv)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if q, err := pairsOf(keptEnds, srv); err == nil && q[keptEnds[0].name].server.EchoRepRecv > p[keptEnds[0].name].server.EchoRepRecv+1 {
		t.Errorf("echoes still crossing after rules remove: the program is still attached")
	}
}

// TestGWBPFFallback: without CAP_BPF the program cannot load; --gre-path
// auto says why and takes nf_tables, and the calls work; --gre-path bpf
// refuses to start.
func TestGWBPFFallback(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	tp.gw.MustPptpgw("rules", "install")
	noBPF := []string{"setpriv", "--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all", "--"}
	refused := tp.gw.Command(append(noBPF, l.PptpgwPath(), "run", "--gre-path", "bpf",
		"--admin-socket", l.Path("refused.sock"), "--state-file", l.Path("refused.json"))...)
	done := make(chan error, 1)
	var stderr strings.Builder
	refused.Stderr = &stderr
	if err := refused.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- refused.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(stderr.String(), "--gre-path bpf: no CAP_BPF") {
			t.Errorf("--gre-path bpf without CAP_BPF: %v, stderr %q", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		refused.Process.Kill()
		t.Fatal("--gre-path bpf without CAP_BPF started")
	}
	gw := tp.gw.StartGateway(lab.GatewayConfig{Wrap: noBPF})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	pc := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	ends := []end{{"pptp1", pc.Status}}
	waitEchoes(l, "LCP echoes with the fallback path", ends, srv, 1, 20*time.Second)
	waitCalls(l, gw, 1, nil, 5*time.Second)
	st := gw.MustStats()
	if st["gre_path_kernel"] != 1 || st["gre_path_bpf"] != 0 {
		t.Errorf("stats gre_path_kernel %d gre_path_bpf %d, want 1, 0", st["gre_path_kernel"], st["gre_path_bpf"])
	}
	l.MustWaitFor("the call in the nft maps", func() error {
		if n := gw.MustStats()["gre_kernel_calls"]; n != 1 {
			return fmt.Errorf("gre_kernel_calls %d", n)
		}
		return nil
	}, 5*time.Second)
	if !logHas(gw, "GRE path", `"gre_path": "kernel"`, "no CAP_BPF") {
		t.Error("the daemon did not log why it took nf_tables")
	}
}
