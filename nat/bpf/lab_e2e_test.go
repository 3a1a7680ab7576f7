//go:build e2e

package bpf

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// MACs of the golden lab's interfaces and neighbours.
var (
	macGwOut  = mac("02:00:00:00:01:00")
	macGwIn   = mac("02:00:00:00:01:01")
	macRouter = mac("02:00:00:00:00:02") // 198.51.100.2, the way to the peer
	macInside = mac("02:00:00:00:00:10") // 192.168.77.10
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// pinDir is a bpffs directory of this test, removed at cleanup.
func pinDir(t testing.TB, tag string) string {
	t.Helper()
	d := filepath.Join("/sys/fs/bpf", fmt.Sprintf("pptpgw-bpf-test-%d-%s", os.Getpid(), tag))
	t.Cleanup(func() { _ = Remove(d) })
	return d
}

// goldenNS is one namespace holding the gateway's two interfaces (veths
// whose peers stay in it too), the routes and permanent neighbours that
// bpf_fib_lookup answers from, forwarding on.
func goldenNS(t testing.TB) (ns string, ifOut, ifIn int) {
	t.Helper()
	ns = nstest.NewNS(t, "bpfgold")
	sh := func(args ...string) { nstest.Sh(t, append([]string{"ip", "netns", "exec", ns}, args...)...) }
	sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
	sh("ip", "link", "add", "bpfgo", "address", macGwOut.String(), "type", "veth", "peer", "name", "bpfgo1")
	sh("ip", "link", "add", "bpfgi", "address", macGwIn.String(), "type", "veth", "peer", "name", "bpfgi1")
	// A third interface the program is not attached to.
	sh("ip", "link", "add", "bpfgx", "type", "veth", "peer", "name", "bpfgx1")
	for _, l := range []string{"bpfgo", "bpfgo1", "bpfgi", "bpfgi1", "bpfgx", "bpfgx1"} {
		sh("ip", "link", "set", l, "up")
	}
	sh("ip", "addr", "add", "198.51.100.1/24", "dev", "bpfgo")
	sh("ip", "addr", "add", "192.168.77.1/24", "dev", "bpfgi")
	sh("ip", "addr", "add", "192.168.78.1/24", "dev", "bpfgx")
	sh("ip", "neigh", "replace", "192.168.78.10", "lladdr", macInside.String(), "dev", "bpfgx", "nud", "permanent")
	sh("ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
	sh("ip", "neigh", "replace", "198.51.100.2", "lladdr", macRouter.String(), "dev", "bpfgo", "nud", "permanent")
	sh("ip", "neigh", "replace", "192.168.77.10", "lladdr", macInside.String(), "dev", "bpfgi", "nud", "permanent")
	nstest.InNS(t, ns, func() {
		o, err1 := net.InterfaceByName("bpfgo")
		i, err2 := net.InterfaceByName("bpfgi")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		ifOut, ifIn = o.Index, i.Index
	})
	return ns, ifOut, ifIn
}

// frame is the fields of a golden Ethernet + IPv4 + GRE v1 frame.
type frame struct {
	dst, src net.HardwareAddr
	verIHL   byte // 0x45 by default
	frag     uint16
	ttl      byte
	saddr    string
	daddr    string
	greFlags uint16 // 0x3001 (S, K, version 1) by default
	greProto uint16 // 0x880b by default
	callID   uint16
	payload  int // PPP bytes after the GRE header
	badCsum  bool
}

// bytes builds the frame with a correct IPv4 checksum (computed from
// scratch, so a golden output proves the program's incremental update).
func (f frame) bytes() []byte {
	if f.verIHL == 0 {
		f.verIHL = 0x45
	}
	if f.greFlags == 0 {
		f.greFlags = 0x3001
	}
	if f.greProto == 0 {
		f.greProto = 0x880b
	}
	ihl := int(f.verIHL&0xf) * 4
	gre := []byte{byte(f.greFlags >> 8), byte(f.greFlags), byte(f.greProto >> 8), byte(f.greProto),
		byte(f.payload >> 8), byte(f.payload), byte(f.callID >> 8), byte(f.callID)}
	if f.greFlags&0x1000 != 0 {
		gre = binary.BigEndian.AppendUint32(gre, 1234)
	}
	if f.greFlags&0x0080 != 0 {
		gre = binary.BigEndian.AppendUint32(gre, 99)
	}
	pl := make([]byte, f.payload)
	for i := range pl {
		pl[i] = byte(i)
	}
	b := append([]byte{}, f.dst...)
	b = append(b, f.src...)
	b = append(b, 0x08, 0x00)
	ip := make([]byte, ihl)
	ip[0] = f.verIHL
	binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(gre)+len(pl)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	binary.BigEndian.PutUint16(ip[6:], f.frag)
	ip[8], ip[9] = f.ttl, 47
	copy(ip[12:], net.ParseIP(f.saddr).To4())
	copy(ip[16:], net.ParseIP(f.daddr).To4())
	binary.BigEndian.PutUint16(ip[10:], ipCsum(ip))
	if f.badCsum {
		ip[10] ^= 0xff
	}
	b = append(b, ip...)
	b = append(b, gre...)
	return append(b, pl...)
}

func ipCsum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func netInterface(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}
