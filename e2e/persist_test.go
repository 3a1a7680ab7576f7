//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/e2e/lab"
)

// The state file (issue 12, item 7): a crash loses no call, and calls
// from before a reboot neither linger nor stand in a new call's way.

// kill SIGKILLs the daemon and waits for it to be gone.
func kill(t *testing.T, g *lab.Gateway) {
	t.Helper()
	if err := g.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("pptpgw after SIGKILL: %v, want killed", err)
	}
}

// fastIn and fastOut are the packets the kernel tiers of a GRE path
// translated: bpf runs nf_tables behind it, which takes over while the
// tc programs are not attached (the lab's `ip netns exec` gives each
// daemon a private bpffs, so a killed daemon's tcx links go with it and
// the restarted one attaches again at the next control segment).
func fastIn(s map[string]uint64, path string) uint64 {
	return s["gre_"+path+"_in"] + map[bool]uint64{true: s["gre_kernel_in"]}[path == "bpf"]
}

func fastOut(s map[string]uint64, path string) uint64 {
	return s["gre_"+path+"_out"] + map[bool]uint64{true: s["gre_kernel_out"]}[path == "bpf"]
}

// TestGWCrash: two calls come up (their first LCP echoes answered) and the
// daemon is SIGKILLed as soon as the state file written on change holds
// both calls (a call set up within the write gap before a SIGKILL is the
// documented loss), long before its periodic snapshot. Restarted, it
// knows them (same IDs), their LCP echoes resume on both ends, their GRE
// is counted on the path in use, and the control streams carry on where
// the daemon left them, though the file's positions are older than the
// streams (a CDN afterwards ends its call). On each GRE path.
func TestGWCrash(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"queue", "kernel", "bpf"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			testCrash(t, path)
		})
	}
}

func testCrash(t *testing.T, path string) {
	tp := newGWTopo(t, 2)
	l := tp.l
	tp.gw.MustPptpgw("rules", "install")
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", path, "--snapshot-interval", "1h"}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	c2 := tp.clients[1].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(1), CallID: 1000})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	waitEchoes(l, "LCP opened and a first echo answered on both ends of 2 calls", ends, srv, 1, 20*time.Second)
	waitStateFile(l, gw, 2)
	kill(t, gw)
	before, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	gw.Restart()
	restored, err := gw.Calls()
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != 2 {
		t.Fatalf("after SIGKILL and restart: %d calls, want 2: %s", len(restored), callList(restored))
	}
	for _, c := range restored {
		if c.State != "established" {
			t.Errorf("restored call %s", c)
		}
	}
	if !logHas(gw, "restored connections checked against conntrack", `"confirmed": 2`) {
		t.Errorf("the restarted daemon did not confirm both connections with conntrack")
	}
	waitRising(l, "echo replies rising on both ends after the crash", ends, srv, before, 15*time.Second)
	after := waitCalls(l, gw, 2, nil, 5*time.Second)
	for i := range after {
		if after[i].ID != restored[i].ID || after[i].PeerCallID != restored[i].PeerCallID {
			t.Errorf("call changed after the restart: %s -> %s", restored[i], after[i])
		}
	}
	if path != "queue" {
		l.MustWaitFor(path+" path translating the restored calls", func() error {
			s := gw.MustStats()
			if s["gre_"+path+"_calls"] != 2 || fastIn(s, path) == 0 || fastOut(s, path) == 0 {
				return fmt.Errorf("gre_%s_calls %d, in %d, out %d", path, s["gre_"+path+"_calls"], fastIn(s, path), fastOut(s, path))
			}
			return nil
		}, 10*time.Second)
	} else {
		waitCalls(l, gw, 2, func(cs []lab.GWCall) error {
			for i, c := range cs {
				if c.PacketsIn <= restored[i].PacketsIn || c.PacketsOut <= restored[i].PacketsOut {
					return fmt.Errorf("no GRE counted after the restart: %s -> %s", restored[i], c)
				}
			}
			return nil
		}, 10*time.Second)
	}
	shutdownCall(t, srv, c2)
	callGone(l, gw, clientIP(1), 10*time.Second)
	if id := callFrom(t, restored, clientIP(1)).ID; !logHas(gw, "call torn down", id, `"reason": "cdn"`) {
		t.Errorf("call %s was not torn down by its CDN after the crash", id)
	}
	if err := gw.Stop(); err != nil {
		t.Errorf("pptpgw on SIGTERM: %v, want exit 0", err)
	}
}

// TestGWStaleState: the state file outlives everything else, as across a
// reboot: a lab with one call, its daemon stopped (the call in its file),
// is torn down; a lab built from scratch gets the file. Its daemon finds
// the connection in no conntrack entry (it stays unconfirmed); a new call
// from the same inside address to the new server, which numbers its calls
// afresh (the same Peer Call ID), replaces the stale call at once and runs
// on the kernel fast path (its GRE reaches no queue); the stale connection
// is gone after --restore-grace.
func TestGWStaleState(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"kernel", "bpf"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			testStaleState(t, path)
		})
	}
}

// callInOldLab sets up one call in a lab of its own, stops its daemon and
// tears the lab down; it returns the call and the daemon's state file.
func callInOldLab(t *testing.T, path string) (lab.GWCall, []byte) {
	tp := newGWTopo(t, 1)
	l := tp.l
	defer l.Cleanup()
	tp.gw.MustPptpgw("rules", "install")
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", path}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c1 := tp.clients[0].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(0), CallID: 1000})
	waitEchoes(l, "LCP opened on the first call", []end{{"pptpcli1", c1.Status}}, srv, 1, 20*time.Second)
	old := waitCalls(l, gw, 1, nil, 5*time.Second)[0]
	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw on SIGTERM: %v", err)
	}
	state, err := os.ReadFile(gw.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	return old, state
}

func testStaleState(t *testing.T, path string) {
	const grace = 20 * time.Second
	old, state := callInOldLab(t, path)
	tp := newGWTopo(t, 1)
	l := tp.l
	tp.gw.MustPptpgw("rules", "install")
	if err := os.WriteFile(l.Path("pptpgw.state.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	restartAt := time.Now()
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", path, "--restore-grace", grace.String()}})
	if !logHas(gw, "restored connections checked against conntrack", `"unconfirmed": 1`) {
		t.Errorf("the restored connection was not left unconfirmed")
	}
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c2 := tp.clients[0].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(0), CallID: 1000})
	ends := []end{{"pptpcli", c2.Status}}
	p := waitEchoes(l, "LCP opened on the new call", ends, srv, 1, 20*time.Second)
	calls := waitCalls(l, gw, 1, nil, 5*time.Second)
	cur := calls[0]
	if cur.PeerCallID != old.PeerCallID || time.Since(restartAt) >= grace {
		t.Fatalf("no collision to test: old %s, new %s (%v after the restart)", old, cur, time.Since(restartAt))
	}
	if all, _ := gw.Calls(); len(all) != 1 {
		t.Errorf("the stale call stays beside the new one with the same Peer Call ID: %s", callList(all))
	}
	if !logHas(gw, "call torn down", old.ID, `"reason": "replaced"`) {
		t.Errorf("stale call %s not torn down as replaced", old.ID)
	}
	l.MustWaitFor("the new call on the "+path+" path", func() error {
		if n := gw.MustStats()["gre_"+path+"_calls"]; n != 1 {
			return fmt.Errorf("gre_%s_calls %d", path, n)
		}
		return nil
	}, 5*time.Second)
	s0 := gw.MustStats()
	waitRising(l, "echo replies rising on the new call", ends, srv, p, 10*time.Second)
	l.MustWaitFor("the new call's GRE counted on the "+path+" path", func() error {
		s := gw.MustStats()
		if fastIn(s, path) <= fastIn(s0, path) || fastOut(s, path) <= fastOut(s0, path) {
			return fmt.Errorf("in %d -> %d, out %d -> %d", fastIn(s0, path), fastIn(s, path), fastOut(s0, path), fastOut(s, path))
		}
		return nil
	}, 10*time.Second)
	if s := gw.MustStats(); s["gre_in"] != s0["gre_in"] || s["gre_out"] != s0["gre_out"] {
		t.Errorf("the new call's GRE reached the queues: gre_in %d -> %d, gre_out %d -> %d",
			s0["gre_in"], s["gre_in"], s0["gre_out"], s["gre_out"])
	}
	l.MustWaitFor("the stale connection ended after the grace (and its linger)", func() error {
		s := gw.MustStats()
		all, err := gw.Calls()
		if err != nil {
			return err
		}
		if s["control_conns_active"] != 1 || len(all) != 1 || all[0].ID != cur.ID || all[0].State != "established" {
			return fmt.Errorf("control_conns_active %d, calls: %s", s["control_conns_active"], callList(all))
		}
		return nil
	}, grace+25*time.Second)
	if d := time.Since(restartAt); d < grace {
		t.Errorf("the stale connection ended %v after the restart, before the grace %v", d, grace)
	}
}

// waitStateFile waits until gw's state file on disk holds n established
// calls. It reads the file only (written by rename, never torn), leaving
// the daemon's temporary files alone.
func waitStateFile(l *lab.Lab, gw *lab.Gateway, n int) {
	l.T.Helper()
	l.MustWaitFor(fmt.Sprintf("the state file holding %d established calls", n), func() error {
		b, err := os.ReadFile(gw.StateFile)
		if err != nil {
			return err
		}
		var snap conntrack.Snapshot
		if err := json.Unmarshal(b, &snap); err != nil {
			return err
		}
		up := 0
		for _, c := range snap.Conns {
			for _, k := range c.Calls {
				if k.State == conntrack.StateEstablished {
					up++
				}
			}
		}
		if up != n {
			return fmt.Errorf("%d established", up)
		}
		return nil
	}, 5*time.Second)
}
