//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// TestDemo runs `make demo`'s program (its own prefix and directory, so a
// developer's demo is never touched): both calls come up, the lab keeps
// running after the program exits, `demo up` a second time replaces it,
// and `demo down` leaves no namespace, process or file.
func TestDemo(t *testing.T) {
	t.Parallel()
	l := lab.New(t) // root, tools, and the binaries
	demo := lab.Build(t, lab.Module+"/e2e/cmd/demo")
	bin := l.PptpgwPath()
	const prefix = "pgdemotest"
	dir := l.Path("demo")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(demo, append(args, "--dir", dir, "--prefix", prefix)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("demo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	namespaces := func() []string {
		out, _ := exec.Command("ip", "netns", "list").Output()
		var ns []string
		for _, line := range strings.Split(string(out), "\n") {
			if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, prefix+"-") {
				ns = append(ns, name)
			}
		}
		return ns
	}
	t.Cleanup(func() { exec.Command(demo, "down", "--dir", dir, "--prefix", prefix).Run() })

	established := regexp.MustCompile(`(?m)^\S+\s+established\s+pns-inside\s+192\.168\.1\.1[01]:`)
	calls := func(out string) int { return len(established.FindAllString(out, -1)) }
	for round := 1; round <= 2; round++ {
		out := run("up", "--pptpgw", bin)
		if calls(out) != 2 || !strings.Contains(out, "gre_in") || !strings.Contains(out, "sudo make demo-down") {
			t.Fatalf("demo up (round %d): want 2 established calls, stats and the hints:\n%s", round, out)
		}
		if ns := namespaces(); len(ns) != 4 {
			t.Fatalf("round %d: namespaces %v", round, ns)
		}
	}
	// The program has exited; the lab lives on and its calls carry GRE.
	sock := dir + "/pptpgw.sock"
	pkts := regexp.MustCompile(`(?m)^\S+\s+established\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)`)
	count := func() string {
		out, err := exec.Command("ip", "netns", "exec", prefix+"-gw", bin, "calls", "--admin-socket", sock).CombinedOutput()
		if err != nil {
			t.Fatalf("pptpgw calls after demo up: %v\n%s", err, out)
		}
		m := pkts.FindAllStringSubmatch(string(out), -1)
		if len(m) != 2 {
			t.Fatalf("pptpgw calls after demo up:\n%s", out)
		}
		return m[0][1] + "," + m[1][1]
	}
	before := count()
	if err := lab.WaitFor(func() error {
		if now := count(); now == before {
			return os.ErrDeadlineExceeded
		}
		return nil
	}, 5*time.Second); err != nil {
		t.Errorf("GRE counters not rising after the demo program exited (%s)", before)
	}

	out := run("down")
	if ns := namespaces(); len(ns) != 0 || !strings.Contains(out, "demo removed") {
		t.Errorf("after demo down: namespaces %v\n%s", ns, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after demo down: %s still there (%v)", dir, err)
	}
	if pins, _ := filepath.Glob(filepath.Join(lab.BPFFS, "pptpgw-"+prefix+"-*")); len(pins) != 0 {
		t.Errorf("after demo down: bpf pins left %v", pins)
	}
}
