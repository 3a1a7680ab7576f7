//go:build e2e

package rules

import (
	"encoding/binary"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Hand-made GRE headers (RFC 2637 §4.1 for version 1).
var (
	greV1Data = []byte{0x30, 0x81, 0x88, 0x0b, 0, 4, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0x03, 0xc0, 0x21}
	greV1Ack  = []byte{0x20, 0x81, 0x88, 0x0b, 0, 0, 0x12, 0x34, 0, 0, 0, 1}
	greV1Seq  = []byte{0x30, 0x01, 0x88, 0x0b, 0, 4, 0x12, 0x34, 0, 0, 0, 2, 0xff, 0x03, 0xc0, 0x21}
	// GRE v0 carrying IPv4, and v0 with a key carrying PPP: neither is PPTP.
	greV0IP  = append([]byte{0x00, 0x00, 0x08, 0x00}, ipHeader(17, "10.0.0.1", "10.0.0.2")...)
	greV0PPP = []byte{0x20, 0x00, 0x88, 0x0b, 0, 0, 0x12, 0x34, 0xff, 0x03, 0xc0, 0x21}
)

func ipHeader(proto byte, src, dst string) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], 28)
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return h
}

func icmpMsg(typ, code byte, body []byte) []byte {
	m := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, body...)
	var sum uint32
	for i := 0; i+1 < len(m); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(m[i:]))
	}
	if len(m)%2 == 1 {
		sum += uint32(m[len(m)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(m[2:], ^uint16(sum))
	return m
}

// quoted is an error's quoted datagram: an IPv4 header and 8 bytes.
func quoted(proto byte) []byte {
	return append(ipHeader(proto, "198.51.100.2", "198.51.100.1"), greV1Ack[:8]...)
}

func sendRaw(t *testing.T, proto int, mark int, dst string, msgs ...[]byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, mark); err != nil {
			t.Fatal(err)
		}
	}
	sa := &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}
	for _, m := range msgs {
		if err := unix.Sendto(fd, m, 0, sa); err != nil {
			t.Fatalf("sendto %s: %v", dst, err)
		}
	}
}

var saveCounterRE = regexp.MustCompile(`^\[(\d+):\d+\] -A (\S+) `)

// packets returns the packet counters of the rules of chain, in order.
func packets(t *testing.T, ns, table, chain string) []int {
	var out []int
	for _, l := range strings.Split(sh(t, "ip", "netns", "exec", ns, "iptables-save", "-c", "-t", table), "\n") {
		if m := saveCounterRE.FindStringSubmatch(l); m != nil && m[2] == chain {
			n, _ := strconv.Atoi(m[1])
			out = append(out, n)
		}
	}
	return out
}

// TestE2EU32Matches sends real GRE and ICMP packets at a namespace holding
// the rules and checks which rules counted them: the u32 expressions take
// GRE v1 (data, ack-only, seq-only) and ICMP errors quoting GRE, and
// nothing else; addrtype and the mark bit do their part.
func TestE2EU32Matches(t *testing.T) {
	needRoot(t)
	a, b := newNS(t, "u32a"), newNS(t, "u32b")
	link(t, a, "va", "198.51.100.1/24", b, "vb", "198.51.100.2/24")
	sh(t, "ip", "-n", a, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
	sh(t, "ip", "-n", b, "route", "add", "203.0.113.0/24", "via", "198.51.100.1")
	ipt, err := New(wrapper(t, b, "iptables"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(ipt, Config{Queue: 0}); err != nil {
		t.Fatal(err)
	}
	// A counts what B lets out, and sends no protocol-unreachable errors
	// back (they quote GRE and would be counted in B too).
	sh(t, "ip", "netns", "exec", a, "iptables", "-A", "INPUT", "-p", "gre", "-j", "DROP")

	inNS(t, a, func() {
		// To B's own address: 3 GRE v1, 2 not.
		sendRaw(t, unix.IPPROTO_GRE, 0, "198.51.100.2", greV1Data, greV1Ack, greV1Seq, greV0IP, greV0PPP)
		// Through B (not local): notracked, not queued.
		sendRaw(t, unix.IPPROTO_GRE, 0, "203.0.113.7", greV1Data)
		// ICMP errors quoting GRE (2), quoting UDP, and an echo request.
		sendRaw(t, unix.IPPROTO_ICMP, 0, "198.51.100.2",
			icmpMsg(3, 4, quoted(47)), icmpMsg(11, 0, quoted(47)),
			icmpMsg(3, 3, quoted(17)), icmpMsg(8, 0, []byte("ping")))
	})
	inNS(t, b, func() {
		// Sent by B itself: marked (already translated), unmarked, v0.
		sendRaw(t, unix.IPPROTO_GRE, DefaultMarkBit, "198.51.100.1", greV1Data)
		sendRaw(t, unix.IPPROTO_GRE, 0, "198.51.100.1", greV1Ack, greV0IP)
	})

	want := map[string][]int{
		TableRaw + " " + ChainNoTrack: {4, 2},
		// GRE v1, ICMP errors quoting GRE, then every other GRE to B.
		TableRaw + " " + ChainGREIn: {3, 2, 2},
		// B's stack answers the two GRE v0 packets (no tunnel takes them,
		// the queue was bypassed) with an unreachable error: dropped.
		TableRaw + " " + ChainSilence:   {2},
		TableMangle + " " + ChainGREOut: {1},
		// The marked GRE v1 and the GRE v0 left B; the unmarked v1 was
		// queued, and with nobody bound to the queue, dropped.
		"@a filter INPUT": {2},
	}
	var got map[string][]int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = map[string][]int{}
		for k := range want {
			ns, k2 := b, k
			if strings.HasPrefix(k, "@a ") {
				ns, k2 = a, k[3:]
			}
			table, chain, _ := strings.Cut(k2, " ")
			got[k] = packets(t, ns, table, chain)
		}
		done := true
		for k := range want {
			done = done && slices.Equal(got[k], want[k])
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("%s packet counters = %v, want %v", k, got[k], want[k])
		}
	}
}
