//go:build linux

// Package nstest has the network-namespace helpers of the nat packages'
// root-only e2e tests. Each test builds its own namespaces, named
// pgwt-<pid>-<tag> so parallel runs do not collide and leftovers of a
// killed run are recognisable, and deletes them in t.Cleanup, which also
// runs when the test fails.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root")
	}
}

// Sh runs a command and fails the test with its output on error.
func Sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NewNS creates a network namespace with lo up and removes it at cleanup.
func NewNS(t testing.TB, tag string) string {
	t.Helper()
	sweepOnce.Do(sweep)
	name := fmt.Sprintf("pgwt-%d-%s", os.Getpid(), tag)
	Sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Sh(t, "ip", "-n", name, "link", "set", "lo", "up")
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

// Link joins two namespaces with a veth pair, addresses given as CIDR
// ("" for none).
func Link(t testing.TB, a, ifa, addrA, b, ifb, addrB string) {
	t.Helper()
	Sh(t, "ip", "link", "add", ifa, "netns", a, "type", "veth", "peer", "name", ifb, "netns", b)
	for _, e := range [][3]string{{a, ifa, addrA}, {b, ifb, addrB}} {
		if e[2] != "" { // a bridge port has none
			Sh(t, "ip", "-n", e[0], "addr", "add", e[2], "dev", e[1])
		}
	}
	Sh(t, "ip", "-n", a, "link", "set", ifa, "up")
	Sh(t, "ip", "-n", b, "link", "set", ifb, "up")
}

// InNS runs fn on an OS thread switched into namespace ns. Sockets fn
// creates stay in ns after it returns.
func InNS(t testing.TB, ns string, fn func()) {
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

// FD opens a namespace for a NetNS config field, closed at cleanup.
func FD(t testing.TB, ns string) int {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// Wrapper writes a script that runs bin inside ns, for go-iptables' Path
// option: go-iptables only ever execs one binary.
func Wrapper(t testing.TB, ns, bin string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), bin)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", ns, bin)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// RawGRE is a raw GRE socket in ns (closed at cleanup) whose reads time
// out after 300 ms, so that a test waiting for a packet that never comes
// fails instead of hanging.
func RawGRE(t testing.TB, ns string) int {
	t.Helper()
	var fd int
	var err error
	InNS(t, ns, func() { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_GRE) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(300 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd
}

// RecvAll returns the packets fd receives (copies) until its receive
// timeout passes with none.
func RecvAll(fd int) [][]byte {
	var got [][]byte
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return got
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
}
