//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/e2e/lab"
	"golang.org/x/sys/unix"
)

// TestStraySegments: segments with a live control connection's ports,
// sent by someone else (a SYN and a RST far from the stream spoofed from
// the inside host; a SYN-ACK spoofed from the server to the public
// address, its port guessed), pass the kernel's conntrack as ignored or
// invalid packets and reach pptpgw. pptpgw counts them and changes
// nothing: the connection's call stays up and its next call is still
// translated both ways.
func TestStraySegments(t *testing.T) {
	s := startScaleLab(t, "pptpgw", []string{"--gre-path", "queue"}, false)
	p, err := dialPNS(s.tp.clients[0], clientIP(0), serverIP, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	port := uint16(p.conn.LocalAddr().(*net.TCPAddr).Port)
	// The client's next sequence number, from the server's acknowledgment
	// of an Echo-Request: the RST is sent half the sequence space away.
	next, err := nextSeq(s.tp.clients[0], p, port)
	if err != nil {
		t.Fatal(err)
	}
	// MASQUERADE keeps a free source port: the public port is the client's.
	if err := sendTCP(s.tp.clients[0], clientIP(0), serverIP, port, 1723, next+0x10000, 0, tcpSYN); err != nil {
		t.Fatal(err)
	}
	if err := sendTCP(s.tp.srv, serverIP, publicIP, 1723, port, rand.Uint32(), rand.Uint32(), tcpSYN|tcpACK); err != nil {
		t.Fatal(err)
	}
	if err := sendTCP(s.tp.clients[0], clientIP(0), serverIP, port, 1723, next+1<<31, 0, tcpRST); err != nil {
		t.Fatal(err)
	}
	s.tp.l.MustWaitFor("the strays counted", func() error {
		if n := s.gw.MustStats()["control_stray"]; n != 3 {
			return fmt.Errorf("control_stray %d", n)
		}
		return nil
	}, 5*time.Second)

	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(pptpmsg.NewOCRQ(8, 2)); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := pptpmsg.Read(p.conn)
		if err != nil {
			t.Fatalf("the second call's OCRP: %v (the connection's tracking lost?)", err)
		}
		if pptpmsg.Type(m) != pptpmsg.OCRP || len(m) < 32 {
			continue
		}
		if got := binary.BigEndian.Uint16(m[14:]); got != 8 || m[16] != 1 {
			t.Fatalf("OCRP for call %d, result %d: want call 8, result 1", got, m[16])
		}
		break
	}
	waitCalls(s.tp.l, s.gw, 2, func(calls []lab.GWCall) error {
		for _, c := range calls {
			if c.State != "established" {
				return fmt.Errorf("call %s", c)
			}
		}
		return nil
	}, 5*time.Second)
	if st := s.gw.MustStats(); st["control_out_of_order"] != 0 || st["malformed"] != 0 {
		t.Errorf("out of order %d, malformed %d: want none", st["control_out_of_order"], st["malformed"])
	}
}

const (
	tcpRST = 0x04
	tcpSYN = 0x02
	tcpACK = 0x10
)

// nextSeq sends an Echo-Request on p's connection (local port port) and
// returns the acknowledgment number of the server's answer, read from a
// raw socket in ns: the client's next sequence number.
func nextSeq(ns *lab.NS, p *pns, port uint16) (uint32, error) {
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		return err
	}); err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, err
	}
	if _, err := p.conn.Write(pptpmsg.New(pptpmsg.EchoRQ, 16)); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return 0, fmt.Errorf("await the Echo-Reply's segment: %w", err)
		}
		ip := buf[:n]
		if n < 20 || n < hdr.IPv4HeaderLen(ip)+20 {
			continue
		}
		tcp := ip[hdr.IPv4HeaderLen(ip):]
		if binary.BigEndian.Uint16(tcp[0:]) == 1723 && binary.BigEndian.Uint16(tcp[2:]) == port && n > hdr.IPv4HeaderLen(ip)+hdr.TCPHeaderLen(tcp) {
			return binary.BigEndian.Uint32(tcp[8:]), nil
		}
	}
}

// sendTCP sends one TCP segment with no payload from ns through a raw
// socket (the kernel writes the IP header from src): the host's own TCP
// stack never sees it.
func sendTCP(ns *lab.NS, src, dst string, sport, dport uint16, seq, ack uint32, flags byte) error {
	s4, d4 := [4]byte(net.ParseIP(src).To4()), [4]byte(net.ParseIP(dst).To4())
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint32(seg[4:], seq)
	binary.BigEndian.PutUint32(seg[8:], ack)
	seg[12], seg[13] = 5<<4, flags
	binary.BigEndian.PutUint16(seg[14:], 64240)
	pseudo := hdr.Sum(hdr.Sum(0, s4[:]), d4[:]) + hdr.ProtoTCP + uint32(len(seg))
	binary.BigEndian.PutUint16(seg[16:], hdr.Checksum(pseudo, seg))
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: s4}); err != nil {
			return err
		}
		return unix.Sendto(fd, seg, 0, &unix.SockaddrInet4{Addr: d4})
	})
}
