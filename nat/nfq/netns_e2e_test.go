//go:build e2e

package nfq

// Network-namespace helpers for the e2e tests (root only). Each test
// builds its own namespaces, named pgwt-<pid>-<tag> so parallel runs do
// not collide and leftovers of a killed run are recognisable, and deletes
// them in t.Cleanup, which also runs when the test fails.

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root")
	}
}

// sh runs a command and fails the test with its output on error.
func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNS creates a network namespace with lo up and removes it at cleanup.
func newNS(t *testing.T, tag string) string {
	t.Helper()
	sweepOnce.Do(sweep)
	name := fmt.Sprintf("pgwt-%d-%s", os.Getpid(), tag)
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

var sweepOnce sync.Once

// sweep deletes namespaces left by runs that died before their cleanup
// (a test timeout panics past t.Cleanup): pgwt-PID-* whose PID is gone.
func sweep() {
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "pgwt-%d-", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// link joins two namespaces with a veth pair, addresses given as CIDR.
func link(t *testing.T, a, ifa, addrA, b, ifb, addrB string) {
	t.Helper()
	sh(t, "ip", "link", "add", ifa, "netns", a, "type", "veth", "peer", "name", ifb, "netns", b)
	sh(t, "ip", "-n", a, "addr", "add", addrA, "dev", ifa)
	sh(t, "ip", "-n", b, "addr", "add", addrB, "dev", ifb)
	sh(t, "ip", "-n", a, "link", "set", ifa, "up")
	sh(t, "ip", "-n", b, "link", "set", ifb, "up")
}

// inNS runs fn on an OS thread switched into namespace ns. Sockets fn
// creates stay in ns after it returns.
func inNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		// A thread left in the wrong namespace must die with its goroutine:
		// unlock only once it is back.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
}

// nsFD opens a namespace for Config.NetNS, closed at cleanup.
func nsFD(t *testing.T, ns string) int {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}
