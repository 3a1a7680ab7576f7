//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// notifySocket is a fake systemd notify socket: it keeps what the daemon
// sends (READY=1, WATCHDOG=1, STATUS=..., STOPPING=1).
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T, path string) *notifySocket {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); os.Remove(path) })
	n := &notifySocket{path: path}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// count returns how many messages had prefix.
func (n *notifySocket) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if strings.HasPrefix(m, prefix) {
			c++
		}
	}
	return c
}

func (n *notifySocket) last(prefix string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.msgs) - 1; i >= 0; i-- {
		if strings.HasPrefix(n.msgs[i], prefix) {
			return n.msgs[i]
		}
	}
	return ""
}

// waitHealth waits until /healthz reports part (red) or nothing (part "").
func waitHealth(l *lab.Lab, gw *lab.Gateway, part string, timeout time.Duration) lab.Health {
	l.T.Helper()
	var h lab.Health
	what := "health green"
	if part != "" {
		what = "health red: " + part
	}
	l.MustWaitFor(what, func() error {
		var err error
		if h, err = gw.Health(); err != nil {
			return err
		}
		if part == "" && h.Status != "ok" || part != "" && (h.Code != 503 || !h.Has(part)) {
			return fmt.Errorf("%s", h)
		}
		return nil
	}, timeout)
	return h
}

// healthCmd runs `pptpgw health` and checks its exit code and output.
func healthCmd(t *testing.T, gw *lab.Gateway, code int, want string, args ...string) {
	t.Helper()
	out, errOut, c := gw.NS.Pptpgw(append([]string{"health", "--admin-socket", gw.AdminSocket}, args...)...)
	if c != code || !strings.Contains(out, want) {
		t.Errorf("pptpgw health %q: exit %d, want %d; output %q (want %q) %s", args, c, code, out, want, errOut)
	}
}

// TestGWHealthAndMetrics: each failure injected into a live gateway turns
// /healthz red with the part that failed, `pptpgw health` exits 1, and the
// repair turns it green again: the rules flushed (--repair-rules=false),
// the state file unwritable, the call table full, the nf_tables fast path
// deleted under a live call. The daemon speaks sd_notify to a fake systemd; its live
// /metrics passes promtool and holds every metric the dashboard queries.
func TestGWHealthAndMetrics(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	notify := listenNotify(t, l.Path("notify.sock"))
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true,
		Args: []string{"--repair-rules=false", "--max-calls", "1", "--snapshot-interval", "1s", "--gre-path", "kernel"},
		Env:  []string{"NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=2000000"}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	waitHealth(l, gw, "", 10*time.Second)
	healthCmd(t, gw, 0, "ok\n")
	l.MustWaitFor("READY=1 and WATCHDOG=1 pings", func() error {
		if notify.count("READY=1") != 1 || notify.count("WATCHDOG=1") < 2 {
			return fmt.Errorf("notify messages: READY %d WATCHDOG %d", notify.count("READY=1"), notify.count("WATCHDOG=1"))
		}
		return nil
	}, 5*time.Second)

	// Rules: a firewall reload flushes a chain; with --repair-rules=false
	// only the operator puts it back.
	tp.gw.MustRun("iptables", "-t", "mangle", "-F", "PPTPGW-GRE-OUT")
	h := waitHealth(l, gw, "rules", 10*time.Second)
	t.Logf("rules flushed: %s", h)
	healthCmd(t, gw, 1, "rules")
	healthCmd(t, gw, 0, "rules", "--live") // no restart cures an operator's choice
	l.MustWaitFor("systemd's status line says rules", func() error {
		if st := notify.last("STATUS="); !strings.Contains(st, "rules") {
			return fmt.Errorf("status %q", st)
		}
		return nil
	}, 5*time.Second)
	tp.gw.MustPptpgw("rules", "install")
	waitHealth(l, gw, "", 10*time.Second)

	// State file: a directory where the file goes makes the rename fail.
	if err := os.Remove(gw.StateFile); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(gw.StateFile, "blocker"), 0o755); err != nil {
		t.Fatal(err)
	}
	h = waitHealth(l, gw, "state-file", 10*time.Second)
	t.Logf("state file unwritable: %s", h)
	os.RemoveAll(gw.StateFile)
	waitHealth(l, gw, "", 5*time.Second)

	// The call table full: --max-calls 1 and one call up.
	c := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	waitEchoes(l, "LCP opened and echoes answered", []end{{"pptp1", c.Status}}, srv, 1, 20*time.Second)
	calls := waitCalls(l, gw, 1, nil, 5*time.Second)
	h = waitHealth(l, gw, "call-table", 5*time.Second)
	t.Logf("table full: %s", h)
	if notify.count("WATCHDOG=1") == 0 || !h.Live {
		t.Errorf("a full table is not a reason to restart: %s", h)
	}

	// The fast path: its nf_tables table deleted under a live call (nft
	// flush ruleset); the reconciler's next counter read fails, it reports
	// failing and re-creates the table whole at its next tick, the call
	// in it again.
	l.MustWaitFor("call in the nft maps", func() error { return mapped(tp.gw, calls[0], true) }, 5*time.Second)
	tp.gw.MustRun("nft", "delete", "table", "ip", "pptpgw")
	sawFastPath := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !sawFastPath; time.Sleep(20 * time.Millisecond) {
		if h, err := gw.Health(); err == nil && h.Has("fast-path") {
			sawFastPath = true
			t.Logf("fast path failing: %s", h)
		}
	}
	if !sawFastPath {
		t.Errorf("the deleted nft table never showed as a failing fast path (gre_kernel_errors %d)", gw.MustStats()["gre_kernel_errors"])
	}
	l.MustWaitFor("the call back in the re-created nft maps", func() error { return mapped(tp.gw, calls[0], true) }, 5*time.Second)
	l.MustWaitFor("only the table full", func() error {
		if h, err := gw.Health(); err != nil || h.Has("fast-path") || !h.Has("call-table") {
			return fmt.Errorf("%s %v", h, err)
		}
		return nil
	}, 5*time.Second)

	// The call ends: the table has room again.
	c.PPTP.Signal(syscall.SIGTERM)
	callGone(l, gw, clientIP(0), 5*time.Second)
	waitHealth(l, gw, "", 10*time.Second)

	checkLiveMetrics(t, gw)
	if err := gw.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if notify.count("STOPPING=1") != 1 {
		t.Errorf("no STOPPING=1 at SIGTERM")
	}
}

// checkLiveMetrics runs promtool over the daemon's /metrics and checks
// that every metric deploy/grafana/pptpgw.json queries is there.
func checkLiveMetrics(t *testing.T, gw *lab.Gateway) {
	t.Helper()
	exp, err := gw.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pptpgw_call_setup_seconds_count 1\n", "pptpgw_call_duration_seconds_count 1\n",
		`pptpgw_calls_torn_down_total{reason=`, `pptpgw_build_info{goversion="go`, "pptpgw_calls_limit 1\n"} {
		if !strings.Contains(exp, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Error("promtool not installed (apt-get install prometheus)")
	} else {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(exp)
		if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("promtool check metrics over the live /metrics: %v\n%s", err, out)
		}
	}
	for _, n := range dashboardMetricNames(t) {
		if !strings.Contains(exp, "\n"+n+"{") && !strings.Contains(exp, "\n"+n+" ") {
			t.Errorf("the dashboard queries %s, which the live /metrics lacks", n)
		}
	}
}

// dashboardMetricNames returns the metric names deploy/grafana/pptpgw.json
// queries.
func dashboardMetricNames(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "pptpgw.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\b(?:pptpgw|process|go)_[a-zA-Z0-9_]+`)
	var names []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			names = append(names, re.FindAllString(tg.Expr, -1)...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
