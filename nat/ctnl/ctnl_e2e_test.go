//go:build e2e

package ctnl

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/nat/nfq"
)

// lab is client (inside) -- router -- server (outside), the router
// masquerading the inside behind 198.51.100.1 with ports 20000-20100 (so
// the public port differs from the client's) and port-forwarding
// 198.51.100.1:1723 to the client.
type lab struct{ client, router, server string }

func newLab(t *testing.T) lab {
	l := lab{newNS(t, "ctc"), newNS(t, "ctr"), newNS(t, "cts")}
	link(t, l.client, "eth0", "192.168.1.10/24", l.router, "in0", "192.168.1.1/24")
	link(t, l.router, "out0", "198.51.100.1/24", l.server, "eth0", "198.51.100.5/24")
	sh(t, "ip", "-n", l.client, "route", "add", "default", "via", "192.168.1.1")
	sh(t, "ip", "netns", "exec", l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	r := func(args ...string) { sh(t, append([]string{"ip", "netns", "exec", l.router, "iptables"}, args...)...) }
	r("-t", "nat", "-A", "POSTROUTING", "-o", "out0", "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "20000-20100")
	r("-t", "nat", "-A", "PREROUTING", "-i", "out0", "-d", "198.51.100.1", "-p", "tcp", "--dport", "1723",
		"-j", "DNAT", "--to-destination", "192.168.1.10:1723")
	return l
}

// connect opens a TCP connection from ns `from` to addr, served by a
// listener in ns `to` on listen; it returns both ends' views.
func connect(t *testing.T, from, to, listen, addr string) (dialer, acceptor net.Conn) {
	t.Helper()
	var ln net.Listener
	var err error
	inNS(t, to, func() { ln, err = net.Listen("tcp4", listen) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inNS(t, from, func() { dialer, err = net.DialTimeout("tcp4", addr, 3*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialer.Close() })
	if acceptor, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acceptor.Close() })
	// Some data both ways, so the router sees more than the handshake.
	if _, err := dialer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(acceptor, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	return dialer, acceptor
}

func addrOf(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// seen is one Lookup made from the router's mangle FORWARD queue.
type seen struct {
	src, dst netip.AddrPort
	syn, ack bool
	nat      NAT
	err      error
}

func TestE2ELookup(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	conn, err := Dial(nsFD(t, l.router))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The daemon's vantage point: control packets queued in mangle
	// FORWARD, looked up as they pass.
	for _, dir := range []string{"--dport", "--sport"} {
		sh(t, "ip", "netns", "exec", l.router, "iptables", "-t", "mangle", "-A", "FORWARD",
			"-p", "tcp", dir, "1723", "-j", "NFQUEUE", "--queue-num", "0")
	}
	var mu sync.Mutex
	var log []seen
	h := func(q uint16, pkt []byte, mark uint32, _ nfq.Meta) (nfq.Verdict, uint32, bool) {
		ihl := int(pkt[0]&0xf) * 4
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[12:16])), binary.BigEndian.Uint16(pkt[ihl:]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[16:20])), binary.BigEndian.Uint16(pkt[ihl+2:]))
		n, err := Lookup(conn, src, dst)
		mu.Lock()
		log = append(log, seen{src, dst, pkt[ihl+13]&0x02 != 0, pkt[ihl+13]&0x10 != 0, n, err})
		mu.Unlock()
		return nfq.Accept, mark, false
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r, err := nfq.Open(ctx, nfq.Config{Queue: 0, NetNS: nsFD(t, l.router)}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	takeLog := func() []seen {
		mu.Lock()
		defer mu.Unlock()
		out := log
		log = nil
		return out
	}

	t.Run("masquerade", func(t *testing.T) {
		c, s := connect(t, l.client, l.server, "198.51.100.5:1723", "198.51.100.5:1723")
		inside, public, peer := addrOf(c.LocalAddr()), addrOf(s.RemoteAddr()), addrOf(s.LocalAddr())
		if public.Addr() != netip.MustParseAddr("198.51.100.1") || public.Port() < 20000 || public.Port() > 20100 {
			t.Fatalf("server saw %s, want 198.51.100.1:20000-20100", public)
		}
		for _, dir := range [][2]netip.AddrPort{{inside, peer}, {peer, inside}} {
			n, err := Lookup(conn, dir[0], dir[1])
			if err != nil || !n.Found || !n.SNAT || n.DNAT || !n.InsideIsOriginator() {
				t.Fatalf("Lookup(%s, %s) = %+v, %v", dir[0], dir[1], n, err)
			}
			if n.Public() != public || n.Inside() != inside || n.Peer() != peer || n.Helper != "" {
				t.Errorf("Lookup(%s, %s): public %s inside %s peer %s helper %q; want %s %s %s",
					dir[0], dir[1], n.Public(), n.Inside(), n.Peer(), n.Helper, public, inside, peer)
			}
		}
		checkQueueView(t, takeLog(), inside, peer, public)
	})

	t.Run("port-forward", func(t *testing.T) {
		o, i := connect(t, l.server, l.client, "192.168.1.10:1723", "198.51.100.1:1723")
		outside, inside := addrOf(o.LocalAddr()), addrOf(i.LocalAddr())
		if addrOf(i.RemoteAddr()) != outside {
			t.Fatalf("inside server saw %s, want the opener %s", i.RemoteAddr(), outside)
		}
		public := netip.MustParseAddrPort("198.51.100.1:1723")
		for _, dir := range [][2]netip.AddrPort{{outside, inside}, {inside, outside}} {
			n, err := Lookup(conn, dir[0], dir[1])
			if err != nil || !n.Found || n.SNAT || !n.DNAT || n.InsideIsOriginator() {
				t.Fatalf("Lookup(%s, %s) = %+v, %v", dir[0], dir[1], n, err)
			}
			if n.Public() != public || n.Inside() != inside || n.Peer() != outside {
				t.Errorf("Lookup(%s, %s): public %s inside %s peer %s; want %s %s %s",
					dir[0], dir[1], n.Public(), n.Inside(), n.Peer(), public, inside, outside)
			}
		}
		checkQueueView(t, takeLog(), outside, inside, public)
	})

	t.Run("kernel helper", func(t *testing.T) {
		sh(t, "ip", "netns", "exec", l.router, "iptables", "-t", "raw", "-A", "PREROUTING",
			"-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
		c, s := connect(t, l.client, l.server, "198.51.100.5:1723", "198.51.100.5:1723")
		n, err := Lookup(conn, addrOf(c.LocalAddr()), addrOf(s.LocalAddr()))
		if err != nil || n.Helper != "pptp" {
			t.Errorf("Lookup with CT --helper pptp: Helper %q, %v; want pptp", n.Helper, err)
		}
		takeLog()
	})

	t.Run("unknown", func(t *testing.T) {
		n, err := Lookup(conn, netip.MustParseAddrPort("192.168.1.10:1"), netip.MustParseAddrPort("198.51.100.5:1723"))
		if err != nil || n.Found {
			t.Errorf("Lookup of no connection = %+v, %v", n, err)
		}
	})
}

// checkQueueView checks what the handler in mangle FORWARD learnt about the
// connection between a and b (as FORWARD sees them): nothing for the first
// SYN (its entry is unconfirmed), the public address for every later
// packet, in both directions.
func checkQueueView(t *testing.T, all []seen, a, b, public netip.AddrPort) {
	t.Helper()
	var log []seen // other connections' late packets (FINs) are ignored
	for _, s := range all {
		if (s.src == a && s.dst == b) || (s.src == b && s.dst == a) {
			log = append(log, s)
		}
	}
	if len(log) < 4 {
		t.Fatalf("queue saw %d packets, want the handshake and data", len(log))
	}
	if first := log[0]; !first.syn || first.ack || first.nat.Found || first.err != nil {
		t.Errorf("first SYN %s -> %s: found %v, %v; want not found yet", first.src, first.dst, first.nat.Found, first.err)
	}
	for i, s := range log[1:] {
		if s.err != nil || !s.nat.Found || s.nat.Public() != public {
			t.Errorf("packet %d %s -> %s: found %v public %s, %v; want public %s",
				i+1, s.src, s.dst, s.nat.Found, s.nat.Public(), s.err, public)
		}
	}
}
