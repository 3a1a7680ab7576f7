//go:build e2e

package silence

import (
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// TestE2ESilence: a router with no GRE handler answers stray GRE with
// ICMP protocol-unreachable; with the table in place nothing comes back
// and the table counts the drops; `nft flush ruleset` removes it and
// Ensure puts it back; Remove deletes it.
func TestE2ESilence(t *testing.T) {
	nstest.NeedRoot(t)
	a, b := nstest.NewNS(t, "silence-a"), nstest.NewNS(t, "silence-b")
	nstest.Link(t, a, "va", "198.51.100.2/24", b, "vb", "198.51.100.1/24")
	// The test sends seven stray packets in about a second; B's per-peer
	// ICMP rate limit (a burst of 6, then one a second) would eat the last.
	nstest.Sh(t, "ip", "netns", "exec", b, "sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
	tbl := New(nstest.FD(t, b))

	// A sends GRE v0 to B and counts the ICMP errors that come back.
	var icmp, gre int
	nstest.InNS(t, a, func() {
		var err error
		if icmp, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP); err != nil {
			t.Fatal(err)
		}
		if gre, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_GRE); err != nil {
			t.Fatal(err)
		}
	})
	defer unix.Close(icmp)
	defer unix.Close(gre)
	to := &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP("198.51.100.1").To4())}
	errorsBack := func(n int) int {
		for range n {
			if err := unix.Sendto(gre, []byte{0, 0, 0x08, 0, 0x45, 0, 0, 20}, 0, to); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		got := 0
		buf := make([]byte, 1500)
		for {
			m, _, err := unix.Recvfrom(icmp, buf, 0)
			if err != nil {
				return got
			}
			if ihl := int(buf[0]&0xf) * 4; m > ihl+8+9 && buf[ihl] == 3 && buf[ihl+8+9] == 47 {
				got++
			}
		}
	}
	if n := errorsBack(2); n != 2 {
		t.Fatalf("without the table: %d protocol-unreachable errors back, want 2 (the lab, not the table, is wrong)", n)
	}
	created, err := tbl.Ensure()
	if err != nil || !created {
		t.Fatalf("Ensure = %v, %v", created, err)
	}
	if created, err := tbl.Ensure(); err != nil || created {
		t.Errorf("second Ensure = %v, %v; want nothing to do", created, err)
	}
	list := nstest.Sh(t, "ip", "netns", "exec", b, "nft", "list", "table", "ip", TableName)
	for _, want := range []string{"hook output priority raw", "@th,136,8 0x2f", "drop"} {
		if !strings.Contains(list, want) {
			t.Errorf("nft list lacks %q:\n%s", want, list)
		}
	}
	if n := errorsBack(3); n != 0 {
		t.Errorf("with the table: %d errors back, want 0", n)
	}
	if n, err := tbl.Dropped(); err != nil || n != 3 {
		t.Errorf("Dropped = %d, %v; want 3", n, err)
	}
	nstest.Sh(t, "ip", "netns", "exec", b, "nft", "flush", "ruleset")
	if created, err := tbl.Ensure(); err != nil || !created {
		t.Errorf("Ensure after nft flush ruleset = %v, %v; want re-created", created, err)
	}
	if n := errorsBack(1); n != 0 {
		t.Errorf("after the re-creation: %d errors back, want 0", n)
	}
	if err := tbl.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if n := errorsBack(1); n != 1 {
		t.Errorf("after Remove: %d errors back, want 1", n)
	}
}
