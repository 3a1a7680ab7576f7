//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Lab is one test's topology: namespaces, processes, and a scratch directory
// for configs, status files, logs and captures.
type Lab struct {
	T      testing.TB
	Prefix string // namespace name prefix, unique per Lab: "pg" PID "x" N
	Dir    string // scratch directory, removed by Cleanup

	mu      sync.Mutex
	nss     []*NS
	procs   []*Proc
	names   map[string]bool
	counts  map[string]int
	closers []func()
	done    bool
	kept    bool // NewKept: processes outlive the program (kept.go)
	// scriptWritten: private.sh is in Dir (privateScriptPath).
	scriptWritten bool
}

// New creates an empty lab and registers its Cleanup. It skips the test when
// not run as root and fails it when a required tool is missing.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e lab needs root")
	}
	for _, tool := range []string{"ip", "unshare", "mount", "mknod"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("lab: %s not found: %v", tool, err)
		}
	}
	sweepStale(t)
	mountBPFFS(t)
	dir, err := os.MkdirTemp("", "pptpgw-lab-")
	if err != nil {
		t.Fatalf("lab: scratch dir: %v", err)
	}
	prefix := fmt.Sprintf("pg%dx%d", os.Getpid(), labSeq.Add(1))
	l := &Lab{T: t, Prefix: prefix, Dir: dir, names: map[string]bool{}, counts: map[string]int{}}
	t.Cleanup(l.Cleanup)
	return l
}

// labSeq numbers the labs of this test process.
var labSeq atomic.Int64

// staleNS matches the lab's namespace names: "pg" PID "x" N "-" name.
var staleNS = regexp.MustCompile(`^pg([0-9]+)x[0-9]+-`)

// sweepStale deletes namespaces left by a lab whose test process is gone
// (killed by `go test -timeout`, which runs no cleanups). The owner's pid is
// in the name; a namespace whose owner still runs is never touched.
func sweepStale(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := staleNS.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // owner alive (or not ours to judge)
		}
		n := &NS{Name: name}
		n.killAll()
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			t.Logf("lab: deleted stale namespace %s", name)
		}
	}
}

// Path returns a path inside the lab's scratch directory.
func (l *Lab) Path(elem ...string) string {
	return filepath.Join(append([]string{l.Dir}, elem...)...)
}

// claim reserves a process name, which names its log files.
func (l *Lab) claim(name string) {
	l.T.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.names[name] {
		l.T.Fatalf("lab: process name %q used twice", name)
	}
	l.names[name] = true
}

// nextName returns base1, base2, ... for processes the caller did not name.
func (l *Lab) nextName(base string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		l.counts[base]++
		name := base + strconv.Itoa(l.counts[base])
		if !l.names[name] {
			return name
		}
	}
}

func (l *Lab) onCleanup(f func()) {
	l.mu.Lock()
	l.closers = append(l.closers, f)
	l.mu.Unlock()
}

// Cleanup stops every process (SIGTERM, then SIGKILL after 2 s), kills
// whatever is still inside the lab's namespaces, deletes them, and removes
// the scratch directory. On a failed test it first logs the tail of every
// log file; with PPTPGW_E2E_KEEP=1 the directory is kept. Safe to call twice.
func (l *Lab) Cleanup() {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.done = true
	procs, nss, closers := l.procs, l.nss, l.closers
	l.mu.Unlock()

	stopAll(procs, 2*time.Second)
	for _, n := range nss {
		n.killAll()
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			l.T.Logf("lab: delete netns %s: %v: %s", n.Name, err, out)
		}
		// The namespace's interfaces are gone; what a pptpgw pinned goes
		// with its pins.
		os.RemoveAll(n.BPFPinDir())
	}
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	if l.T.Failed() {
		l.dumpLogs()
	}
	if os.Getenv("PPTPGW_E2E_KEEP") == "1" {
		l.T.Logf("lab: kept %s", l.Dir)
		return
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		l.T.Logf("lab: remove %s: %v", l.Dir, err)
	}
}

// dumpLogs logs the last lines of every log the lab collected, so a failed
// run in CI explains itself.
func (l *Lab) dumpLogs() {
	files, _ := filepath.Glob(l.Path("*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		l.T.Logf("lab: ---- %s (last %d lines)\n%s", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
	}
}

// WaitFor polls cond every 100 ms until it returns nil, and returns nil; or,
// after timeout, the last error cond returned.
func WaitFor(cond func() error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MustWaitFor is WaitFor that fails the test, naming what it waited for.
func (l *Lab) MustWaitFor(what string, cond func() error, timeout time.Duration) {
	l.T.Helper()
	if err := WaitFor(cond, timeout); err != nil {
		l.T.Fatalf("waiting for %s: %v", what, err)
	}
}
