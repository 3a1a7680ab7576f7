//go:build e2e

package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/fastpath/fastpathtest"
	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

func addr(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

// greV1 is a GRE v1 header with key, an optional sequence number and ack.
func greV1(callID uint16, seq, ack bool) []byte {
	b := []byte{0x20, 0x01, 0x88, 0x0b, 0, 0, byte(callID >> 8), byte(callID)}
	if seq {
		b[0] |= 0x10
		b = binary.BigEndian.AppendUint32(b, 7)
	}
	if ack {
		b[1] |= 0x80
		b = binary.BigEndian.AppendUint32(b, 3)
	}
	if seq {
		b = append(b, 0xff, 0x03, 0xc0, 0x21)
		binary.BigEndian.PutUint16(b[4:], 4)
	}
	return b
}

func send(t *testing.T, fd int, dst string, pkt []byte) {
	t.Helper()
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}); err != nil {
		t.Fatal(err)
	}
}

// recvGRE returns the source, destination and Call ID of the GRE packets
// fd receives until it times out.
func recvGRE(fd int) []string {
	var got []string
	for _, p := range nstest.RecvAll(fd) {
		ihl := int(p[0]&0xf) * 4
		src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		got = append(got, src.String()+">"+dst.String()+"/"+strconv.Itoa(int(binary.BigEndian.Uint16(p[ihl+6:]))))
	}
	return got
}

// TestFastPathKernel: the table Start creates translates the GRE of a
// mapped call both ways in the kernel (data, ack-only, seq-less), leaves
// unknown Call IDs alone, counts per element, and follows MapDel and Stop.
func TestFastPathKernel(t *testing.T) {
	nstest.NeedRoot(t)
	c, gw, srv := nstest.NewNS(t, "nftc"), nstest.NewNS(t, "nftg"), nstest.NewNS(t, "nfts")
	nstest.Link(t, c, "eth0", "192.168.1.10/24", gw, "lan", "192.168.1.1/24")
	nstest.Link(t, gw, "wan", "198.51.100.1/24", srv, "eth0", "198.51.100.2/24")
	nstest.Sh(t, "ip", "-n", gw, "addr", "add", "198.51.100.3/24", "dev", "wan") // another public address
	nstest.Sh(t, "ip", "-n", c, "route", "add", "default", "via", "192.168.1.1")
	nstest.Sh(t, "ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	call := conntrack.GREMap{Peer: addr("198.51.100.2"), OuterID: 16384, Public: addr("198.51.100.1"),
		Inside: addr("192.168.1.10"), InsideID: 4660, PeerID: 128}
	src := fastpathtest.New(call)
	r := startReconciler(t, gw, src, 100*time.Millisecond)
	list := nstest.Sh(t, "ip", "netns", "exec", gw, "nft", "list", "table", "ip", TableName)
	for _, want := range []string{"198.51.100.2 . 198.51.100.1 . 16384 counter packets 0 bytes 0 : 192.168.1.10",
		"198.51.100.2 . 198.51.100.1 . 16384 : 4660", "192.168.1.10 . 198.51.100.2 . 128 counter packets 0 bytes 0 }", "192.168.1.10 . 198.51.100.2 . 128 : 198.51.100.1", "priority raw - 1", "priority mangle - 1"} {
		if !strings.Contains(list, want) {
			t.Errorf("nft list table: no %q:\n%s", want, list)
		}
	}
	t.Logf("nft list table ip %s:\n%s", TableName, list)
	cfd, sfd := nstest.RawGRE(t, c), nstest.RawGRE(t, srv)
	send(t, sfd, "198.51.100.1", greV1(16384, true, true))
	send(t, sfd, "198.51.100.1", greV1(16384, false, true))
	send(t, sfd, "198.51.100.1", greV1(16384, true, false))
	send(t, sfd, "198.51.100.1", greV1(999, true, true))   // unknown: not translated, not forwarded
	send(t, sfd, "198.51.100.3", greV1(16384, true, true)) // not the call's public address: the same
	got := strings.Join(recvGRE(cfd), " ")
	if want := strings.Repeat("198.51.100.2>192.168.1.10/4660 ", 3); got+" " != want {
		t.Errorf("inside received %q, want %q", got, want)
	}
	send(t, cfd, "198.51.100.2", greV1(128, true, true))
	send(t, cfd, "198.51.100.2", greV1(128, false, true))
	got = strings.Join(recvGRE(sfd), " ")
	if want := "198.51.100.1>198.51.100.2/128 198.51.100.1>198.51.100.2/128"; got != want {
		t.Errorf("server received %q, want %q", got, want)
	}
	deadline := time.Now().Add(3 * time.Second)
	for (src.Credited(call, true).Packets != 3 || src.Credited(call, false).Packets != 2) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if in, out := src.Credited(call, true), src.Credited(call, false); in.Packets != 3 || out.Packets != 2 || in.Bytes == 0 || out.Bytes == 0 {
		t.Errorf("counters credited: in %+v out %+v, want 3 and 2 packets", in, out)
	}
	// A call torn down: its elements go, its GRE is no longer translated.
	src.Set()
	deadline = time.Now().Add(3 * time.Second)
	for r.Stats().Mappings != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	list = nstest.Sh(t, "ip", "netns", "exec", gw, "nft", "list", "table", "ip", TableName)
	if strings.Contains(list, "16384") || strings.Contains(list, "192.168.1.10") {
		t.Errorf("elements left after MapDel:\n%s", list)
	}
	send(t, sfd, "198.51.100.1", greV1(16384, true, true))
	if got := recvGRE(cfd); len(got) != 0 {
		t.Errorf("inside received %v after MapDel", got)
	}
	stopReconciler(t, r, true)
	if out := nstest.Sh(t, "ip", "netns", "exec", gw, "nft", "list", "tables"); strings.Contains(out, TableName) {
		t.Errorf("table left after Stop(true): %s", out)
	}
}

// TestFastPathManyCalls: a start with 10 000 calls (a restart of a busy
// gateway) fills the maps in several transactions, and the last call's
// GRE is translated by the kernel.
func TestFastPathManyCalls(t *testing.T) {
	nstest.NeedRoot(t)
	c, gw, srv := nstest.NewNS(t, "nftmc"), nstest.NewNS(t, "nftmg"), nstest.NewNS(t, "nftms")
	nstest.Link(t, c, "eth0", "192.168.1.10/24", gw, "lan", "192.168.1.1/24")
	nstest.Link(t, gw, "wan", "198.51.100.1/24", srv, "eth0", "198.51.100.2/24")
	nstest.Sh(t, "ip", "-n", c, "route", "add", "default", "via", "192.168.1.1")
	nstest.Sh(t, "ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	const n = 10000
	r := startMany(t, gw, n, 100*time.Millisecond)
	if st := r.Stats(); st.Mappings != n || st.Errors != 0 {
		t.Errorf("stats %+v, want %d mappings and no error", st, n)
	}
	for _, m := range []struct{ kind, name, key string }{
		{"map", MapInAddr, "198.51.100.2 . 198.51.100.1 . "},
		{"map", MapInCallID, "198.51.100.2 . 198.51.100.1 . "},
		{"set", SetOutCalls, "192.168.1.10 . 198.51.100.2 . "},
		{"map", MapOutAddr, "192.168.1.10 . 198.51.100.2 . "},
	} {
		list := nstest.Sh(t, "ip", "netns", "exec", gw, "nft", "list", m.kind, "ip", TableName, m.name)
		if got := strings.Count(list, m.key); got != n {
			t.Errorf("%s %s holds %d elements, want %d", m.kind, m.name, got, n)
		}
	}
	cfd := nstest.RawGRE(t, c)
	send(t, nstest.RawGRE(t, srv), "198.51.100.1", greV1(n-1, true, true))
	if got, want := strings.Join(recvGRE(cfd), " "), fmt.Sprintf("198.51.100.2>192.168.1.10/%d", (n-1)^0x8000); got != want {
		t.Errorf("inside received %q, want %q", got, want)
	}
}

// startReconciler programs namespace gw with src's calls and keeps it
// converged until the test ends.
func startReconciler(tb testing.TB, gw string, src *fastpathtest.Source, tick time.Duration) *fastpath.Reconciler {
	tb.Helper()
	b, err := New(Config{MarkBit: 0x10000000, NetNS: nstest.FD(tb, gw)})
	if err != nil {
		tb.Fatal(err)
	}
	r := fastpath.New(src, b, fastpath.Config{Tick: tick})
	if err := r.Start(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		r.Stop(true)
	})
	return r
}

func stopReconciler(t *testing.T, r *fastpath.Reconciler, remove bool) {
	t.Helper()
	if err := r.Backend().Close(remove); err != nil {
		t.Fatal(err)
	}
}

// startMany starts a Reconciler in namespace gw with n calls from one peer.
func startMany(tb testing.TB, gw string, n int, tick time.Duration) *fastpath.Reconciler {
	tb.Helper()
	var calls []conntrack.GREMap
	for i := range n {
		calls = append(calls, conntrack.GREMap{Peer: addr("198.51.100.2"), OuterID: uint16(i), Public: addr("198.51.100.1"),
			Inside: addr("192.168.1.10"), InsideID: uint16(i) ^ 0x8000, PeerID: uint16(i)})
	}
	return startReconciler(tb, gw, fastpathtest.New(calls...), tick)
}

// BenchmarkPoll: one read of the element counters (a dump of two sets)
// with 1 000 and 10 000 calls mapped, the cost behind reading them less
// often above CountersPerTick (root: sudo go test -tags e2e -run '^$' -bench Poll ./nat/nft/).
func BenchmarkPoll(b *testing.B) {
	nstest.NeedRoot(b)
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			r := startMany(b, nstest.NewNS(b, "nftpoll"), n, time.Hour)
			for b.Loop() {
				r.ReadCounters()
			}
		})
	}
}
