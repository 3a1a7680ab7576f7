//go:build linux

package lab

import (
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// NS is a network namespace of the lab.
type NS struct {
	Lab  *Lab
	Name string // full netns name, "PREFIX-short"
}

// AddNS creates the namespace PREFIX-name with lo up and IPv6 off (no router
// solicitations or DAD noise in captures).
func (l *Lab) AddNS(name string) *NS {
	l.T.Helper()
	n := &NS{Lab: l, Name: l.Prefix + "-" + name}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		l.T.Fatalf("lab: ip netns add %s: %v: %s", n.Name, err, out)
	}
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	n.IP("link", "set", "lo", "up")
	n.Sysctl("net.ipv6.conf.all.disable_ipv6", "1")
	n.Sysctl("net.ipv6.conf.default.disable_ipv6", "1")
	return n
}

// IP runs `ip -n NS args...` and fails the test on error.
func (n *NS) IP(args ...string) string {
	n.Lab.T.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		n.Lab.T.Fatalf("lab: ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Command returns an exec.Cmd that runs args inside the namespace (through
// `ip netns exec`, which also gives it a /sys of that namespace).
func (n *NS) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	// If the test binary dies, so do the commands it started; a kept
	// lab's outlive the program (kept.go).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if n.Lab != nil && n.Lab.kept {
		cmd.SysProcAttr.Pdeathsig = 0
	}
	// bpffs is one for every namespace: each namespace's pptpgw pins its
	// bpf path apart (the lab's Cleanup removes the pins).
	cmd.Env = append(os.Environ(), "PPTPGW_BPF_PIN_DIR="+n.BPFPinDir())
	return cmd
}

// BPFPinDir is where a pptpgw in this namespace pins its bpf path: on the
// lab's own bpffs (BPFFS), not /sys/fs/bpf, which `ip netns exec` hides
// behind a fresh sysfs, so pins there would die with each daemon.
func (n *NS) BPFPinDir() string { return filepath.Join(BPFFS, "pptpgw-"+n.Name) }

// BPFFS is a bpffs the lab mounts once (New) and leaves for the next run.
const BPFFS = "/run/pptpgw-e2e-bpf"

var bpffsOnce sync.Once

// mountBPFFS mounts BPFFS unless a bpffs is there already.
func mountBPFFS(t testing.TB) {
	bpffsOnce.Do(func() {
		var st unix.Statfs_t
		if unix.Statfs(BPFFS, &st) == nil && uint32(st.Type) == uint32(unix.BPF_FS_MAGIC) {
			return
		}
		if err := os.MkdirAll(BPFFS, 0o700); err != nil {
			t.Fatalf("lab: %v", err)
		}
		if out, err := exec.Command("mount", "-t", "bpf", "bpf", BPFFS).CombinedOutput(); err != nil {
			t.Fatalf("lab: mount bpffs on %s: %v: %s", BPFFS, err, out)
		}
	})
}

// Run runs args in the namespace and returns its combined output.
func (n *NS) Run(args ...string) (string, error) {
	out, err := n.Command(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(args ...string) string {
	n.Lab.T.Helper()
	out, err := n.Run(args...)
	if err != nil {
		n.Lab.T.Fatalf("lab: %v", err)
	}
	return out
}

// Sysctl sets a sysctl in the namespace (net.* keys are per namespace).
func (n *NS) Sysctl(key, value string) {
	n.Lab.T.Helper()
	n.MustRun("sysctl", "-q", "-w", key+"="+value)
}

// EnableForwarding turns on IPv4 forwarding: the namespace becomes a router.
func (n *NS) EnableForwarding() { n.Sysctl("net.ipv4.ip_forward", "1") }

// AddAddr adds an address in CIDR form ("192.168.1.1/24") to an interface.
func (n *NS) AddAddr(ifname, cidr string) { n.IP("addr", "add", cidr, "dev", ifname) }

// DefaultRoute routes everything off-link via gw.
func (n *NS) DefaultRoute(gw string) { n.IP("route", "add", "default", "via", gw) }

// AddRoute adds a route to dst (CIDR) via gw.
func (n *NS) AddRoute(dst, gw string) { n.IP("route", "add", dst, "via", gw) }

// AddBridge creates a bridge in the namespace, up, with an address unless
// cidr is empty.
func (n *NS) AddBridge(name, cidr string) {
	n.IP("link", "add", name, "type", "bridge")
	n.IP("link", "set", name, "up")
	if cidr != "" {
		n.AddAddr(name, cidr)
	}
}

// Veth creates a veth pair straight into the two namespaces (never in the
// host's) and sets both ends up.
func (l *Lab) Veth(a *NS, aIf string, b *NS, bIf string) {
	l.T.Helper()
	a.IP("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	a.IP("link", "set", aIf, "up")
	b.IP("link", "set", bIf, "up")
}

// Link connects two namespaces with a veth pair and gives each end an
// address (CIDR; "" for none).
func (l *Lab) Link(a *NS, aIf, aCIDR string, b *NS, bIf, bCIDR string) {
	l.T.Helper()
	l.Veth(a, aIf, b, bIf)
	if aCIDR != "" {
		a.AddAddr(aIf, aCIDR)
	}
	if bCIDR != "" {
		b.AddAddr(bIf, bCIDR)
	}
}

// LinkToBridge connects namespace a (interface aIf, address aCIDR) to the
// bridge br in namespace brNS, through a port named port.
func (l *Lab) LinkToBridge(a *NS, aIf, aCIDR string, brNS *NS, br, port string) {
	l.T.Helper()
	l.Link(a, aIf, aCIDR, brNS, port, "")
	brNS.IP("link", "set", port, "master", br)
}

// Pids returns the pids of every process inside the namespace.
func (n *NS) Pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// killAll kills what is still inside the namespace: only the lab's own
// processes can be there, since the namespace is the lab's.
func (n *NS) killAll() {
	for _, p := range n.Pids() {
		syscall.Kill(p, syscall.SIGKILL)
	}
}
