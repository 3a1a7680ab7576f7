//go:build linux

package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PkgPptpgw is the gateway daemon's import path.
const PkgPptpgw = Module + "/cmd/pptpgw"

// GatewayConfig configures StartGateway.
type GatewayConfig struct {
	Name string // process name, default "pptpgw" (then "pptpgw-2", ... on restarts)
	// InstallRules passes --install-rules; otherwise the rules must be in
	// place already (Pptpgw("rules", "install")).
	InstallRules bool
	// Args are more `run` flags (e.g. --queue 4, --force).
	Args []string
	// LogLevel is --log-level, default debug.
	LogLevel string
	// Wrap runs the daemon under a command (e.g. setpriv dropping
	// capabilities).
	Wrap []string
	// Env are more environment variables (e.g. NOTIFY_SOCKET).
	Env []string
}

// Gateway is a running `pptpgw run` in a namespace, with its admin socket
// and state file in the lab directory.
type Gateway struct {
	*Proc
	NS          *NS
	Bin         string
	AdminSocket string
	StateFile   string
	cfg         GatewayConfig
	runs        int
}

// PptpgwPath returns the pptpgw binary the tests run: $PPTPGW_E2E_BIN when
// set (e.g. bin/pptpgw from `make build`), else one built once per test
// process.
func (l *Lab) PptpgwPath() string {
	l.T.Helper()
	if p := os.Getenv("PPTPGW_E2E_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			l.T.Fatalf("lab: PPTPGW_E2E_BIN: %v", err)
		}
		return abs
	}
	return Build(l.T, PkgPptpgw)
}

// Pptpgw runs the pptpgw binary with args in the namespace and returns its
// stdout, its stderr and its exit code (-1 when it could not run).
func (n *NS) Pptpgw(args ...string) (stdout, stderr string, code int) {
	n.Lab.T.Helper()
	cmd := n.Command(append([]string{n.Lab.PptpgwPath()}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return o.String(), e.String(), code
}

// MustPptpgw is Pptpgw that fails the test unless the exit code is 0.
func (n *NS) MustPptpgw(args ...string) string {
	n.Lab.T.Helper()
	out, errOut, code := n.Pptpgw(args...)
	if code != 0 {
		n.Lab.T.Fatalf("lab: pptpgw %s in %s: exit %d: %s%s", strings.Join(args, " "), n.Name, code, out, errOut)
	}
	return out
}

// StartGateway runs `pptpgw run` in the namespace with an admin socket and
// a state file of its own in the lab directory, and waits until the admin
// socket answers. On a failed test the daemon's whole log is dumped.
func (n *NS) StartGateway(cfg GatewayConfig) *Gateway {
	l := n.Lab
	l.T.Helper()
	if cfg.Name == "" {
		cfg.Name = "pptpgw"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "debug"
	}
	g := &Gateway{NS: n, Bin: l.PptpgwPath(), cfg: cfg,
		AdminSocket: l.Path(cfg.Name + ".sock"), StateFile: l.Path(cfg.Name + ".state.json")}
	g.start()
	return g
}

// Restart starts the daemon again (after Stop) with the same flags, admin
// socket and state file; its log is NAME-2.log, NAME-3.log, ...
func (g *Gateway) Restart() {
	g.NS.Lab.T.Helper()
	if done, _ := g.Exited(); !done {
		g.NS.Lab.T.Fatalf("lab: %s: restart while still running", g.Name)
	}
	g.start()
}

// RunArgs returns the `run` command line the gateway uses.
func (g *Gateway) RunArgs() []string {
	args := append(append([]string(nil), g.cfg.Wrap...), g.Bin, "run", "--admin-socket", g.AdminSocket, "--state-file", g.StateFile,
		"--log-level", g.cfg.LogLevel, "--log-format", "console")
	if g.cfg.InstallRules {
		args = append(args, "--install-rules")
	}
	return append(args, g.cfg.Args...)
}

func (g *Gateway) start() {
	l := g.NS.Lab
	l.T.Helper()
	g.runs++
	name := g.cfg.Name
	if g.runs > 1 {
		name = fmt.Sprintf("%s-%d", g.cfg.Name, g.runs)
	}
	opt := StartOptions{}
	if len(g.cfg.Env) > 0 { // StartWith replaces the environment Command sets
		opt.Env = append([]string{"PPTPGW_BPF_PIN_DIR=" + g.NS.BPFPinDir()}, g.cfg.Env...)
	}
	g.Proc = g.NS.StartWith(name, opt, g.RunArgs()...)
	p := g.Proc
	l.onCleanup(func() { g.dumpLog(p) })
	l.MustWaitFor(name+" admin socket", func() error {
		if done, err := p.Exited(); done {
			b, _ := os.ReadFile(p.Log)
			return fmt.Errorf("%s exited: %v\n%s", name, err, b)
		}
		_, err := g.Stats()
		return err
	}, 10*time.Second)
}

// dumpLog logs the whole daemon log when the test failed: the lab's own
// dump shows only the last lines of every log.
func (g *Gateway) dumpLog(p *Proc) {
	l := g.NS.Lab
	if !l.T.Failed() {
		return
	}
	b, err := os.ReadFile(p.Log)
	if err != nil || len(b) == 0 {
		return
	}
	const max = 256 << 10
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	l.T.Logf("lab: ==== %s daemon log (%s)\n%s", p.Name, p.Log, b)
}

// Stop sends SIGTERM and waits up to 10 s for the daemon to exit; it
// returns the exit error (nil for exit 0).
func (g *Gateway) Stop() error {
	g.NS.Lab.T.Helper()
	if err := g.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return g.Wait(10 * time.Second)
}

// GWCall is one call of `pptpgw calls --json` (DESIGN.md "Admin socket").
type GWCall struct {
	ID           string    `json:"id"`
	State        string    `json:"state"`
	Role         string    `json:"role"`
	InsideAddr   string    `json:"inside_addr"`
	InsideCallID uint16    `json:"inside_call_id"`
	PublicAddr   string    `json:"public_addr"`
	OuterCallID  uint16    `json:"outer_call_id"`
	PeerAddr     string    `json:"peer_addr"`
	PeerCallID   uint16    `json:"peer_call_id"`
	Created      time.Time `json:"created"`
	LastSeen     time.Time `json:"last_seen"`
	PacketsIn    uint64    `json:"packets_in"`
	PacketsOut   uint64    `json:"packets_out"`
	BytesIn      uint64    `json:"bytes_in"`
	BytesOut     uint64    `json:"bytes_out"`
	Node         string    `json:"node,omitempty"` // a gateway pair's (--ha-node)
}

func (c GWCall) String() string {
	return fmt.Sprintf("%s %s %s inside %s/%d outer %d peer %s/%d pkts in %d out %d",
		c.ID, c.State, c.Role, c.InsideAddr, c.InsideCallID, c.OuterCallID, c.PeerAddr, c.PeerCallID,
		c.PacketsIn, c.PacketsOut)
}

// Calls runs `pptpgw calls --json` against the gateway's admin socket.
func (g *Gateway) Calls() ([]GWCall, error) {
	out, errOut, code := g.NS.Pptpgw("calls", "--json", "--admin-socket", g.AdminSocket)
	if code != 0 {
		return nil, fmt.Errorf("pptpgw calls --json: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	var body struct {
		Calls []GWCall `json:"calls"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		return nil, fmt.Errorf("pptpgw calls --json: %w: %q", err, out)
	}
	if body.Calls == nil {
		return nil, fmt.Errorf("pptpgw calls --json: no \"calls\" array: %q", out)
	}
	return body.Calls, nil
}

// Stats runs `pptpgw stats --json` against the gateway's admin socket.
func (g *Gateway) Stats() (map[string]uint64, error) {
	out, errOut, code := g.NS.Pptpgw("stats", "--json", "--admin-socket", g.AdminSocket)
	if code != 0 {
		return nil, fmt.Errorf("pptpgw stats --json: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	var s map[string]uint64
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return nil, fmt.Errorf("pptpgw stats --json: %w: %q", err, out)
	}
	return s, nil
}

// MustStats is Stats that fails the test on error.
func (g *Gateway) MustStats() map[string]uint64 {
	g.NS.Lab.T.Helper()
	s, err := g.Stats()
	if err != nil {
		g.NS.Lab.T.Fatalf("lab: %v", err)
	}
	return s
}

// Do runs f on an OS thread switched into the namespace, so sockets f
// creates live there (and keep living there once f returns).
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the thread is back in its own namespace. If
		// that fails, the thread stays locked and dies with this goroutine
		// rather than run other goroutines in the wrong namespace. A dying
		// thread is not harmless either: the children it forked get their
		// Pdeathsig (SIGKILL), so the normal path must not end the thread.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", n.Name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w (after: %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Healthz asks the admin socket's GET /healthz and returns nil when every
// part works, else an error saying what does not (README "Health").
func (g *Gateway) Healthz() error {
	h, err := g.Health()
	if err != nil {
		return err
	}
	if h.Status != "ok" {
		return fmt.Errorf("GET /healthz: %s", h)
	}
	return nil
}

// RSS returns the daemon's resident set size (VmRSS of /proc/PID/status)
// in bytes.
func (g *Gateway) RSS() (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.Pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", g.Pid())
}
