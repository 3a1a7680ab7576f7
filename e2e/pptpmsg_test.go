//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/e2e/lab"
)

// Hand-made PPTP for the tests that need what no client does on its own:
// a control connection ended by RST, raw bytes on port 1723, GRE for a
// call that is gone.

// The messages come from the kit (alg/pptpmsg).

// ctrlMsg returns a control message of length n and type typ, cookie set.
func ctrlMsg(n int, typ uint16) []byte { return pptpmsg.New(typ, n) }

func sccrq() []byte { return pptpmsg.NewSCCRQ("e2e") }

// pns is a hand-driven PNS: one control connection, one call, no PPP.
type pns struct {
	conn   *net.TCPConn
	gre    *net.IPConn // keeps the kernel from answering GRE with ICMP
	callID uint16
	peerID uint16
}

// dialPNS connects from ns (address local) to server:1723, and sets up
// one outgoing call with Call ID callID.
func dialPNS(ns *lab.NS, local, server string, callID uint16) (*pns, error) {
	p := &pns{callID: callID}
	err := ns.Do(func() error {
		g, err := net.ListenIP("ip4:gre", &net.IPAddr{IP: net.ParseIP(local)})
		if err != nil {
			return fmt.Errorf("GRE socket: %w", err)
		}
		p.gre = g
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp4", net.JoinHostPort(server, "1723"))
		if err != nil {
			return err
		}
		p.conn = c.(*net.TCPConn)
		return nil
	})
	if err != nil {
		p.close()
		return nil, err
	}
	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer p.conn.SetDeadline(time.Time{})
	if _, err := p.conn.Write(sccrq()); err != nil {
		p.close()
		return nil, fmt.Errorf("send SCCRQ: %w", err)
	}
	if err := p.await(pptpmsg.SCCRP); err != nil {
		p.close()
		return nil, err
	}
	if _, err := p.conn.Write(pptpmsg.NewOCRQ(callID, 1)); err != nil {
		p.close()
		return nil, fmt.Errorf("send OCRQ: %w", err)
	}
	for {
		m, err := pptpmsg.Read(p.conn)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("await OCRP: %w", err)
		}
		if pptpmsg.Type(m) != pptpmsg.OCRP || len(m) < 32 {
			continue
		}
		if got := binary.BigEndian.Uint16(m[14:]); got != callID {
			p.close()
			return nil, fmt.Errorf("OCRP for call %d, want %d", got, callID)
		}
		if m[16] != 1 {
			p.close()
			return nil, fmt.Errorf("OCRP result %d", m[16])
		}
		p.peerID = binary.BigEndian.Uint16(m[12:])
		return p, nil
	}
}

func (p *pns) await(typ uint16) error {
	for {
		m, err := pptpmsg.Read(p.conn)
		if err != nil {
			return fmt.Errorf("await message type %d: %w", typ, err)
		}
		if pptpmsg.Type(m) == typ {
			return nil
		}
	}
}

// reset ends the control connection with a RST (SO_LINGER 0).
func (p *pns) reset() error {
	if err := p.conn.SetLinger(0); err != nil {
		return err
	}
	return p.conn.Close()
}

func (p *pns) close() {
	if p.conn != nil {
		p.conn.Close()
	}
	if p.gre != nil {
		p.gre.Close()
	}
}

// greMarker is the high half of the sequence number of crafted GRE
// packets, so captures can tell them from the peers' own.
const greMarker = 0x7E57

// greV1 returns an enhanced GRE packet (RFC 2637 §4.1) for callID with
// sequence number greMarker<<16|seq, carrying an LCP Echo-Request.
func greV1(callID uint16, seq uint16) []byte {
	payload := []byte{0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0}
	return pptpmsg.GRE(callID, greMarker<<16|uint32(seq), payload)
}

// greSocket is a raw GRE socket in ns bound to src.
func greSocket(ns *lab.NS, src string) (*net.IPConn, error) {
	var c *net.IPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenIP("ip4:gre", &net.IPAddr{IP: net.ParseIP(src)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("GRE socket in %s: %w", ns.Name, err)
	}
	return c, nil
}

// sendGRE sends n crafted GRE v1 packets for callID from ns (address src)
// to dst through a raw socket.
func sendGRE(ns *lab.NS, src, dst string, callID uint16, n int) error {
	c, err := greSocket(ns, src)
	if err != nil {
		return err
	}
	defer c.Close()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	for i := range n {
		if _, err := c.WriteToIP(greV1(callID, uint16(i)), to); err != nil {
			return fmt.Errorf("send GRE: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// rawControl connects from ns (address local) to server:1723, writes each
// of msgs, and waits up to a second for the server to close.
func rawControl(ns *lab.NS, local, server string, msgs ...[]byte) error {
	c, err := dialControl(ns, local, server, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, c)
	return nil
}

// dialControl connects from ns (address local) to server:1723.
func dialControl(ns *lab.NS, local, server string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err = d.Dial("tcp4", net.JoinHostPort(server, "1723"))
		return err
	})
	return c, err
}
