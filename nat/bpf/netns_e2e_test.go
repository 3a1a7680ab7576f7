//go:build e2e

package bpf

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/florianl/go-tc"
	"github.com/florianl/go-tc/core"
	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// labCall is the call of the three-namespace lab: inside host
// 192.168.77.10 (Call ID 7), peer 198.51.100.2 (Call ID 555), public
// 198.51.100.1, outer Call ID 40001.
var labCall = conntrack.GREMap{Peer: addr("198.51.100.2"), OuterID: 40001, Public: addr("198.51.100.1"),
	Inside: addr("192.168.77.10"), InsideID: 7, PeerID: 555}

type lab struct {
	out, gw, in   string
	ifOut, ifIn   int // the gateway's interfaces
	ofd, gfd, ifd int // raw GRE sockets of the three namespaces
}

// newLab: outside (the peer) — gateway — inside, over veths.
func newLab(t *testing.T, tag string) *lab {
	t.Helper()
	l := &lab{out: nstest.NewNS(t, "bpfo"+tag), gw: nstest.NewNS(t, "bpfg"+tag), in: nstest.NewNS(t, "bpfi"+tag)}
	nstest.Link(t, l.out, "bpfx0", "198.51.100.2/24", l.gw, "bpfgo", "198.51.100.1/24")
	nstest.Link(t, l.gw, "bpfgi", "192.168.77.1/24", l.in, "bpfx1", "192.168.77.10/24")
	nstest.Sh(t, "ip", "-n", l.in, "route", "add", "default", "via", "192.168.77.1")
	nstest.Sh(t, "ip", "netns", "exec", l.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nstest.InNS(t, l.gw, func() {
		o, err1 := net.InterfaceByName("bpfgo")
		i, err2 := net.InterfaceByName("bpfgi")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		l.ifOut, l.ifIn = o.Index, i.Index
	})
	l.ofd, l.gfd, l.ifd = rawGRE(t, l.out), rawGRE(t, l.gw), rawGRE(t, l.in)
	// The gateway learns its neighbours as a control connection would
	// teach it (bpf_fib_lookup answers NO_NEIGH until then).
	poke(t, l.gw, "192.168.77.10")
	poke(t, l.gw, "198.51.100.2")
	return l
}

// poke connects to a closed TCP port of addr from ns: the refusal proves
// reachability and leaves a neighbour entry behind.
func poke(t *testing.T, ns, addr string) {
	t.Helper()
	nstest.InNS(t, ns, func() {
		c, err := net.DialTimeout("tcp", addr+":9", 2*time.Second)
		if err == nil {
			c.Close()
		} else if !errors.Is(err, unix.ECONNREFUSED) {
			t.Fatalf("poke %s: %v", addr, err)
		}
	})
}

func rawGRE(t *testing.T, ns string) int {
	t.Helper()
	fd := nstest.RawGRE(t, ns)
	// DF on, as pptp-linux and Windows send GRE: too big means ICMP,
	// never fragments.
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	return fd
}

// greV1 is a GRE v1 header with key, sequence and ack numbers, then
// payload bytes of PPP.
func greV1(callID uint16, payload int) []byte {
	b := []byte{0x30, 0x81, 0x88, 0x0b, byte(payload >> 8), byte(payload), byte(callID >> 8), byte(callID)}
	b = binary.BigEndian.AppendUint32(b, 7)
	b = binary.BigEndian.AppendUint32(b, 3)
	return append(b, make([]byte, payload)...)
}

func send(t *testing.T, fd int, dst string, pkt []byte) {
	t.Helper()
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}); err != nil {
		t.Fatal(err)
	}
}

// received is a GRE packet as a raw socket reads it.
type received struct {
	src, dst string
	callID   uint16
	ttl      byte
	csumOK   bool
	length   int
}

// recvGRE returns the GRE packets fd receives until it times out.
func recvGRE(fd int) []received {
	var got []received
	for _, p := range nstest.RecvAll(fd) {
		ihl := int(p[0]&0xf) * 4
		got = append(got, received{
			src: netip.AddrFrom4([4]byte(p[12:16])).String(), dst: netip.AddrFrom4([4]byte(p[16:20])).String(),
			callID: binary.BigEndian.Uint16(p[ihl+6:]), ttl: p[8], csumOK: ipCsum(p[:ihl]) == 0, length: len(p),
		})
	}
	return got
}

// counters are labCall's counters each way, since it entered: a delta
// backend's reports added up in tally.
func counters(t *testing.T, b *Backend, tally *[2]fastpath.Counters) (fastpath.Counters, fastpath.Counters) {
	t.Helper()
	in, out := readCounters(t, b)
	for i, c := range [2]fastpath.Counters{in, out} {
		tally[i].Packets += c.Packets
		tally[i].Bytes += c.Bytes
	}
	return tally[0], tally[1]
}

func readCounters(t *testing.T, b *Backend) (fastpath.Counters, fastpath.Counters) {
	t.Helper()
	var in, out fastpath.Counters
	if err := b.Counters(func(k fastpath.InKey, c fastpath.Counters) {
		if k == fastpath.InKeyOf(labCall) {
			in = c
		}
	}, func(k fastpath.OutKey, c fastpath.Counters) {
		if k == fastpath.OutKeyOf(labCall) {
			out = c
		}
	}); err != nil {
		t.Fatal(err)
	}
	return in, out
}

func TestLabTCX(t *testing.T)    { testLab(t, false) }
func TestLabClsBPF(t *testing.T) { testLab(t, true) }

// testLab: GRE through the gateway both ways on the fast path (TTL, Call
// ID, checksum), the MTU case left to the stack, exact counters, pins
// that keep translating across a Close(false) and a new Open with no
// packet lost, and Close(true) leaving nothing behind.
func testLab(t *testing.T, cls bool) {
	nstest.NeedRoot(t)
	tag, mode := "t", "tcx"
	if cls {
		tag, mode = "c", "cls_bpf"
	}
	l := newLab(t, tag)
	cfg := Config{PinDir: pinDir(t, "lab"+tag), MaxCalls: 16, ForceClsBPF: cls, NetNS: nstest.FD(t, l.gw)}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(true) })
	if b.Mode() != mode {
		t.Fatalf("mode %s, want %s", b.Mode(), mode)
	}
	if err := b.Replace([]conntrack.GREMap{labCall}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetInterfaces([]int{l.ifOut, l.ifIn}); err != nil {
		t.Fatal(err)
	}

	const nIn, nOut, size = 5, 3, 20 + 16 + 100
	var tally [2]fastpath.Counters
	for range nIn {
		send(t, l.ofd, "198.51.100.1", greV1(40001, 100))
	}
	got := recvGRE(l.ifd)
	if len(got) != nIn {
		t.Fatalf("inside received %d packets, want %d", len(got), nIn)
	}
	for _, p := range got {
		if p.src != "198.51.100.2" || p.dst != "192.168.77.10" || p.callID != 7 || p.ttl != 63 || !p.csumOK {
			t.Errorf("inside received %+v, want 198.51.100.2 > 192.168.77.10 Call ID 7 TTL 63, checksum valid", p)
		}
	}
	for range nOut {
		send(t, l.ifd, "198.51.100.2", greV1(555, 100))
	}
	got = recvGRE(l.ofd)
	if len(got) != nOut {
		t.Fatalf("outside received %d packets, want %d", len(got), nOut)
	}
	for _, p := range got {
		if p.src != "198.51.100.1" || p.dst != "198.51.100.2" || p.callID != 555 || p.ttl != 63 || !p.csumOK {
			t.Errorf("outside received %+v, want 198.51.100.1 > 198.51.100.2 Call ID 555 TTL 63, checksum valid", p)
		}
	}
	if got := recvGRE(l.gfd); len(got) != 0 {
		t.Errorf("the gateway's stack saw %d GRE packets on the fast path", len(got))
	}
	in, out := counters(t, b, &tally)
	if in.Packets != nIn || in.Bytes != nIn*size || out.Packets != nOut || out.Bytes != nOut*size {
		t.Errorf("counters in %+v out %+v, want %d and %d packets of %d bytes", in, out, nIn, nOut, size)
	}

	// Too big for the inside link: the stack gets it, unchanged.
	nstest.Sh(t, "ip", "-n", l.gw, "link", "set", "bpfgi", "mtu", "1000")
	send(t, l.ofd, "198.51.100.1", greV1(40001, 1200))
	if got := recvGRE(l.ifd); len(got) != 0 {
		t.Errorf("a packet above the MTU was forwarded: %+v", got)
	}
	if got := recvGRE(l.gfd); len(got) != 1 || got[0].dst != "198.51.100.1" || got[0].callID != 40001 || got[0].ttl != 64 {
		t.Errorf("the gateway's stack got %+v, want the packet as sent", got)
	}
	nstest.Sh(t, "ip", "-n", l.gw, "link", "set", "bpfgi", "mtu", "1500")
	if in2, _ := counters(t, b, &tally); in2.Packets != nIn {
		t.Errorf("the packet left to the stack was counted: %+v", in2)
	}

	// Restart: close keeping the pins, open again; a sender runs all
	// along and every packet arrives translated.
	stop := flood(t, l.ofd)
	time.Sleep(50 * time.Millisecond)
	if err := b.Close(false); err != nil {
		t.Fatal(err)
	}
	pins := pinNames(t, cfg.PinDir)
	want := []string{MapCallsName, MapDevName, MapLineName, progPin}
	if !cls {
		want = append(want, tcxPinName(l.ifOut), tcxPinName(l.ifIn))
	}
	slices.Sort(want)
	if !slices.Equal(pins, want) {
		t.Errorf("pins after Close(false): %v, want %v", pins, want)
	}
	time.Sleep(50 * time.Millisecond)
	if b, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	if got := b.Interfaces(); !slices.Equal(got, sorted(l.ifOut, l.ifIn)) {
		t.Errorf("after Open the program is on %v, want %v", got, sorted(l.ifOut, l.ifIn))
	}
	if err := b.Replace([]conntrack.GREMap{labCall}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetInterfaces([]int{l.ifOut, l.ifIn}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	n := stop()
	time.Sleep(100 * time.Millisecond)
	got = recvGRE(l.ifd)
	if len(got) != n || n < 10 {
		t.Errorf("during the restart %d packets sent, %d arrived inside", n, len(got))
	}
	if g := recvGRE(l.gfd); len(g) != 0 {
		t.Errorf("during the restart %d packets took the slow path", len(g))
	}
	// With swaps what the program counted after the last read is still in
	// the lines: exact. Without (32-bit hosts) the previous read is gone:
	// what came between it and Open is lost, never counted twice.
	if in, _ := counters(t, b, &tally); swapCounters && in.Packets != uint64(nIn+n) {
		t.Errorf("counters after the restart: %d packets, want %d (kept across it)", in.Packets, nIn+n)
	} else if !swapCounters && (in.Packets > uint64(nIn+n) || in.Packets < uint64(nIn)) {
		t.Errorf("counters after the restart: %d packets, want %d to %d", in.Packets, nIn, nIn+n)
	}
	t.Logf("%s: %d packets sent across Close(false) and Open, all translated", mode, n)

	// The operator's own clsact filters still see what the program
	// passes (TC_ACT_UNSPEC, not TC_ACT_OK), and never what it redirects.
	nstest.Sh(t, "tc", "-n", l.gw, "qdisc", "replace", "dev", "bpfgo", "clsact")
	operatorDrop(t, l.gw, l.ifOut)
	send(t, l.ofd, "198.51.100.1", greV1(999, 100))
	send(t, l.ofd, "198.51.100.1", greV1(40001, 100))
	if got := recvGRE(l.gfd); len(got) != 0 {
		t.Errorf("a miss passed the operator's drop filter: %+v", got)
	}
	if got := recvGRE(l.ifd); len(got) != 1 {
		t.Errorf("with the operator's filter in place %d packets arrived inside, want 1", len(got))
	}
	nstest.Sh(t, "tc", "-n", l.gw, "filter", "del", "dev", "bpfgo", "ingress", "prio", "5")

	// Close(true): nothing left, GRE reaches the stack again.
	if err := b.Close(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.PinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory left: %v", err)
	}
	for _, dev := range []string{"bpfgo", "bpfgi"} {
		if out := nstest.Sh(t, "tc", "-n", l.gw, "filter", "show", "dev", dev, "ingress"); strings.TrimSpace(out) != "" {
			t.Errorf("filters left on %s: %s", dev, out)
		}
	}
	nstest.InNS(t, l.gw, func() {
		for _, ifi := range []int{l.ifOut, l.ifIn} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: ifi, Attach: ebpf.AttachTCXIngress})
			if err != nil || len(r.Programs) != 0 {
				t.Errorf("tcx programs left on %d: %v %v", ifi, r, err)
			}
		}
	})
	send(t, l.ofd, "198.51.100.1", greV1(40001, 100))
	if got := recvGRE(l.gfd); len(got) != 1 {
		t.Errorf("after Close(true) the stack got %d packets, want 1", len(got))
	}
}

// operatorDrop stands for an operator's tc filter on ifindex: cls_bpf,
// priority 5, drops everything (act_gact is not built here).
func operatorDrop(t *testing.T, ns string, ifindex int) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}}) // TC_ACT_SHOT
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	nstest.InNS(t, ns, func() {
		nl, err := tc.Open(&tc.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		fd, flags, name := uint32(prog.FD()), uint32(tc.BpfActDirect), "operator"
		err = nl.Filter().Add(&tc.Object{
			Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifindex), Handle: 1,
				Parent: core.BuildHandle(tc.HandleRoot, tc.HandleMinIngress), Info: core.FilterInfo(5, unix.ETH_P_ALL)},
			Attribute: tc.Attribute{Kind: "bpf", BPF: &tc.Bpf{FD: &fd, Name: &name, Flags: &flags}},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// flood sends inbound GRE every millisecond until stop, which returns how
// many were sent.
func flood(t *testing.T, fd int) (stop func() int) {
	t.Helper()
	var sent atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pkt := greV1(40001, 100)
		to := &unix.SockaddrInet4{Addr: [4]byte{198, 51, 100, 1}}
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			if unix.Sendto(fd, pkt, 0, to) == nil {
				sent.Add(1)
			}
		}
	}()
	return func() int { close(done); wg.Wait(); return int(sent.Load()) }
}

func pinNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func tcxPinName(ifindex int) string { return filepath.Base(tcxPin("/", ifindex)) }

func sorted(v ...int) []int { slices.Sort(v); return v }
