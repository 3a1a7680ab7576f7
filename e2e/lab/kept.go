//go:build linux

package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A kept lab outlives the program that built it (`make demo`): its
// processes do not die with their parent, its namespaces are named
// PREFIX-NAME with a fixed prefix, and its scratch directory is a state
// directory that records what Teardown must remove.

// keptState is STATEDIR/lab.json.
type keptState struct {
	Prefix     string   `json:"prefix"`
	Namespaces []string `json:"namespaces"`
	Pids       []int    `json:"pids"` // process group leaders
}

const keptStateFile = "lab.json"

// keptPrefixRE is what a kept lab's prefix must look like: never the
// "pg" PID "x" N of test labs, whose namespaces sweepStale deletes once
// their owner is gone.
var keptPrefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}$`)

// NewKept creates a lab for a program rather than a test: everything it
// starts keeps running after the program exits, until Teardown(dir,
// prefix). dir (e.g. /var/tmp/pptpgw-demo; not under /run, which the
// private processes replace with their own) becomes the lab's directory: logs,
// sockets, the lab's binaries and lab.json. A lab already recorded there,
// or any namespace named PREFIX-*, is torn down first, so building the
// same kept lab twice works. log receives what a test would log.
//
// The lab's methods report failures the way they do in a test, through
// Fatalf; in a kept lab that panics with a *KeptFailure, which the program
// recovers (Recover) to print and tear down.
func NewKept(dir, prefix string, log io.Writer) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the lab needs root")
	}
	if !keptPrefixRE.MatchString(prefix) || staleNS.MatchString(prefix+"-") {
		return nil, fmt.Errorf("kept lab prefix %q: want a short lower-case name that is not pgPIDxN", prefix)
	}
	for _, tool := range []string{"ip", "unshare", "mount", "mknod"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: %w", tool, err)
		}
	}
	if real, err := filepath.EvalSymlinks(filepath.Dir(filepath.Clean(dir))); err == nil &&
		(real == "/run" || strings.HasPrefix(real, "/run/")) {
		// The private processes (pptpd, pptp) get their own /run, which
		// would hide the lab's directory from them.
		return nil, fmt.Errorf("kept lab directory %s: must not be under /run", dir)
	}
	if err := Teardown(dir, prefix, log); err != nil {
		return nil, fmt.Errorf("remove the previous lab: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return nil, err
	}
	builds.Lock()
	if builds.dir == "" {
		// The binaries must outlive the program: pptpd starts a pppeer
		// for every call.
		builds.dir = filepath.Join(dir, "bin")
		if builds.paths == nil {
			builds.paths = map[string]string{}
		}
	}
	builds.Unlock()
	l := &Lab{T: &keptTB{log: log}, Prefix: prefix, Dir: dir, names: map[string]bool{}, counts: map[string]int{}, kept: true}
	return l, l.SaveState()
}

// SaveState records the lab's namespaces and processes in lab.json, for
// Teardown. NewKept records the empty lab; call it again once the lab is
// built (Teardown also sweeps PREFIX-* namespaces, so a lab that failed
// half-way is still removed).
func (l *Lab) SaveState() error {
	l.mu.Lock()
	st := keptState{Prefix: l.Prefix}
	for _, n := range l.nss {
		st.Namespaces = append(st.Namespaces, n.Name)
	}
	for _, p := range l.procs {
		if p.Cmd != nil && p.Cmd.Process != nil {
			st.Pids = append(st.Pids, p.Cmd.Process.Pid)
		}
	}
	l.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, keptStateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, keptStateFile))
}

// Teardown removes a kept lab: it stops the recorded processes (SIGTERM,
// then SIGKILL), kills whatever runs in the recorded namespaces and in
// every namespace named PREFIX-*, deletes them, and removes dir. Nothing
// there is fine: it returns nil. A non-empty dir without lab.json is not
// touched: an error says so.
func Teardown(dir, prefix string, log io.Writer) error {
	// Never remove a directory that is not a kept lab's (--dir /var/tmp).
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, keptStateFile)); err != nil && len(entries) > 0 {
		return fmt.Errorf("%s is not a kept lab's directory (no %s): not removing it", dir, keptStateFile)
	}
	var st keptState
	if b, err := os.ReadFile(filepath.Join(dir, keptStateFile)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			fmt.Fprintf(log, "lab: %s: %v (sweeping by prefix)\n", keptStateFile, err)
		}
	}
	// Only process groups still led by what the lab started: a recorded
	// pid may have been reused since.
	var alive []int
	for _, pid := range st.Pids {
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid && inLabNS(pid, st.Namespaces, prefix) {
			syscall.Kill(-pid, syscall.SIGTERM)
			alive = append(alive, pid)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range alive {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	names := map[string]bool{}
	for _, n := range st.Namespaces {
		names[n] = true
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if strings.HasPrefix(name, prefix+"-") {
				names[name] = true
			}
		}
	}
	var errs []string
	for name := range names {
		n := &NS{Name: name}
		n.killAll()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Sprintf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out))))
			continue
		}
		fmt.Fprintf(log, "lab: deleted namespace %s\n", name)
		// The bpf path's pins outlive the daemon on purpose; not the lab's.
		if err := os.RemoveAll(n.BPFPinDir()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// inLabNS reports whether pid runs in one of the lab's namespaces: its
// network namespace is one of theirs.
func inLabNS(pid int, recorded []string, prefix string) bool {
	self, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return false
	}
	for _, name := range recorded {
		if !strings.HasPrefix(name, prefix+"-") {
			continue
		}
		if ns, err := os.Stat(filepath.Join("/run/netns", name)); err == nil && os.SameFile(self, ns) {
			return true
		}
	}
	return false
}

// UseBinary makes Build return path for the main package pkg instead of
// compiling it: a kept lab runs the pptpgw that `make build` made.
// (PPTPGW_BIN would do for PptpgwPath, but it is also in the environment
// of every process the lab starts, and pptpgw refuses PPTPGW_ variables
// it does not know.)
func UseBinary(pkg, path string) {
	builds.Lock()
	defer builds.Unlock()
	if builds.paths == nil {
		builds.paths = map[string]string{}
	}
	builds.paths[pkg] = path
}

// KeptFailure is what a kept lab's Fatalf panics with.
type KeptFailure struct{ Msg string }

func (f *KeptFailure) Error() string { return f.Msg }

// Recover turns a kept lab's failure back into an error: call it deferred,
// as `defer lab.Recover(&err)`.
func Recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(*KeptFailure); ok {
		*err = f
		return
	}
	panic(r)
}

// keptTB stands in for testing.TB in a kept lab. Only the methods the lab
// calls are implemented; the embedded nil interface makes any other call
// panic, which the lab's own tests would catch.
type keptTB struct {
	testing.TB
	mu     sync.Mutex
	log    io.Writer
	failed bool
}

func (k *keptTB) Helper() {}
func (k *keptTB) Logf(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fmt.Fprintf(k.log, format+"\n", args...)
}
func (k *keptTB) Log(args ...any) { k.Logf("%s", fmt.Sprint(args...)) }
func (k *keptTB) Errorf(format string, args ...any) {
	k.Logf(format, args...)
	k.mu.Lock()
	k.failed = true
	k.mu.Unlock()
}
func (k *keptTB) Fatalf(format string, args ...any) {
	k.mu.Lock()
	k.failed = true
	k.mu.Unlock()
	panic(&KeptFailure{Msg: fmt.Sprintf(format, args...)})
}
func (k *keptTB) Fatal(args ...any) { k.Fatalf("%s", fmt.Sprint(args...)) }
func (k *keptTB) Failed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.failed
}
func (k *keptTB) Skip(args ...any) { k.Fatalf("skipped: %s", fmt.Sprint(args...)) }
func (k *keptTB) Name() string     { return "kept" }

// Cleanup runs nothing: a kept lab is removed by Teardown.
func (k *keptTB) Cleanup(func()) {}
