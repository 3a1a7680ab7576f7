//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// runCheckArgs is runCheck with more flags (the daemon's admin socket).
func runCheckArgs(t *testing.T, ns *lab.NS, args ...string) map[string]checkResult {
	t.Helper()
	var out, errOut string
	var code int
	if len(args) == 0 || args[0] != "nsenter" {
		out, errOut, code = ns.Pptpgw(append([]string{"check", "--json"}, args...)...)
	} else {
		// Into a daemon's mount namespace: its bpffs instance (each
		// `ip netns exec` mounts its own) holds the pins.
		cmd := exec.Command("nsenter", append(append(slices.Clone(args[1:3]), "--mount", "--net", "--", ns.Lab.PptpgwPath(), "check", "--json"), args[3:]...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		out, errOut, code = o.String(), e.String(), cmd.ProcessState.ExitCode()
		if err != nil && code < 0 {
			t.Fatalf("nsenter pptpgw check: %v", err)
		}
	}
	if code != 0 && code != 1 {
		t.Fatalf("pptpgw check: exit %d: %s", code, errOut)
	}
	res := map[string]checkResult{}
	var body struct {
		Checks []checkResult `json:"checks"`
	}
	if err := jsonUnmarshal(out, &body); err != nil {
		t.Fatalf("pptpgw check --json: %v: %q", err, out)
	}
	for _, c := range body.Checks {
		res[c.Name] = c
	}
	return res
}

// waitCheck runs check until name has status with detail in it.
func waitCheck(l *lab.Lab, ns *lab.NS, name, status, detail string, timeout time.Duration, args ...string) {
	l.T.Helper()
	l.MustWaitFor(fmt.Sprintf("check %s %s %q", name, status, detail), func() error {
		r := runCheckArgs(l.T.(*testing.T), ns, args...)[name]
		if r.Status != status || !strings.Contains(r.Detail, detail) {
			return fmt.Errorf("check %s: %s %q", name, r.Status, r.Detail)
		}
		return nil
	}, timeout)
}

// TestCheckPaths: `pptpgw check` beside a daemon whose call runs on a
// kernel fast path reads that path's counters: gre-arriving says GRE
// arrives through the nf_tables fast path (the queue rules count nothing
// of it), then, with the daemon restarted on --gre-path bpf, through the
// pinned bpf maps. rules-running compares the rules with what the
// running daemon needs: a check given other flags is told, and a rule
// deleted under a daemon that does not repair fails it.
func TestCheckPaths(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	tp.gw.DefaultRoute(serverIP)
	tp.gw.MustPptpgw("rules", "install")
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", "kernel", "--repair-rules=false"}})
	sock := []string{"--admin-socket", gw.AdminSocket}
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	pc := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	ends := []end{{"pptp1", pc.Status}}
	waitEchoes(l, "LCP opened and echoes answered", ends, srv, 2, 20*time.Second)
	waitCalls(l, gw, 1, nil, 5*time.Second)
	waitCheck(l, tp.gw, "gre-arriving", "ok", "the nf_tables fast path (1 calls)", 10*time.Second, sock...)
	res := runCheckArgs(t, tp.gw, sock...)
	if r := res["gre-arriving"]; !strings.HasPrefix(r.Detail, "GRE arrives") {
		t.Errorf("gre-arriving with the call on the kernel path: %q", r.Detail)
	}
	wantCheck(t, res, "rules-running", "ok", "match the running daemon's configuration")
	wantCheck(t, res, "replication", "ok", "not configured")

	// check given other queues than the daemon's.
	res = runCheckArgs(t, tp.gw, append(sock, "--queue", "4")...)
	wantCheck(t, res, "rules-running", "warn", "the daemon runs with --queue 0")
	// A rule deleted under a daemon that does not repair.
	tp.gw.MustRun("iptables", "-t", "mangle", "-D", "PPTPGW-CTL", "-p", "tcp", "-m", "tcp", "--dport", "1723", "-j", "NFQUEUE", "--queue-num", "0")
	waitCheck(l, tp.gw, "rules-running", "fail", "does not repair them", 10*time.Second, sock...)
	tp.gw.MustPptpgw("rules", "install")
	waitCheck(l, tp.gw, "rules-running", "ok", "match the running daemon's", 10*time.Second, sock...)

	// The same call on the bpf path: the daemon restarted with the state
	// file, --gre-path bpf.
	if err := gw.Stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(gw.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Path("pptpgw-bpf.state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	gw = tp.gw.StartGateway(lab.GatewayConfig{Name: "pptpgw-bpf", Args: []string{"--gre-path", "bpf", "--bpf-interfaces", "lan,wan"}})
	sock = []string{"nsenter", "--target", strconv.Itoa(gw.Pid()), "--admin-socket", gw.AdminSocket, "--gre-path", "bpf",
		"--bpf-pin-dir", tp.gw.BPFPinDir()}
	waitCalls(l, gw, 1, nil, 5*time.Second)
	waitCheck(l, tp.gw, "gre-arriving", "ok", "the bpf fast path (1 calls)", 15*time.Second, sock...)
	l.MustWaitFor("GRE counted in the bpf maps", func() error {
		r := runCheckArgs(t, tp.gw, sock...)["gre-arriving"]
		if !strings.HasPrefix(r.Detail, "GRE arrives") || strings.Contains(r.Detail, "bpf fast path (1 calls) 0 in") {
			return fmt.Errorf("gre-arriving %q", r.Detail)
		}
		return nil
	}, 15*time.Second)
	t.Logf("gre-arriving on the bpf path: %s", runCheckArgs(t, tp.gw, sock...)["gre-arriving"].Detail)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
