//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// Hand-made PPTP for the tests that need what no client does on its own:
// a control connection ended by RST, raw bytes on port 1723, GRE for a
// call that is gone.

const pptpCookie = 0x1A2B3C4D

// Control message types (RFC 2637).
const (
	msgSCCRQ = 1
	msgSCCRP = 2
	msgOCRQ  = 7
	msgOCRP  = 8
)

// ctrlMsg returns a control message of length n and type typ, cookie set.
func ctrlMsg(n int, typ uint16) []byte {
	m := make([]byte, n)
	binary.BigEndian.PutUint16(m[0:], uint16(n))
	binary.BigEndian.PutUint16(m[2:], 1) // control message
	binary.BigEndian.PutUint32(m[4:], pptpCookie)
	binary.BigEndian.PutUint16(m[8:], typ)
	return m
}

func sccrq() []byte {
	m := ctrlMsg(156, msgSCCRQ)
	binary.BigEndian.PutUint16(m[12:], 0x0100) // protocol version 1.0
	binary.BigEndian.PutUint32(m[16:], 1)      // framing: async
	binary.BigEndian.PutUint32(m[20:], 1)      // bearer: analog
	copy(m[28:], "e2e")
	copy(m[92:], "pptpgw-e2e")
	return m
}

func ocrq(callID, serial uint16) []byte {
	m := ctrlMsg(168, msgOCRQ)
	binary.BigEndian.PutUint16(m[12:], callID)
	binary.BigEndian.PutUint16(m[14:], serial)
	binary.BigEndian.PutUint32(m[16:], 2400)
	binary.BigEndian.PutUint32(m[20:], 10000000)
	binary.BigEndian.PutUint32(m[24:], 3) // any bearer
	binary.BigEndian.PutUint32(m[28:], 3) // any framing
	binary.BigEndian.PutUint16(m[32:], 64)
	return m
}

// readCtrl reads one control message.
func readCtrl(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n < 12 {
		return nil, fmt.Errorf("control message of length %d", n)
	}
	m := make([]byte, n)
	copy(m, hdr[:])
	if _, err := io.ReadFull(r, m[2:]); err != nil {
		return nil, err
	}
	return m, nil
}

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
	if err := p.await(msgSCCRP); err != nil {
		p.close()
		return nil, err
	}
	if _, err := p.conn.Write(ocrq(callID, 1)); err != nil {
		p.close()
		return nil, fmt.Errorf("send OCRQ: %w", err)
	}
	for {
		m, err := readCtrl(p.conn)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("await OCRP: %w", err)
		}
		if binary.BigEndian.Uint16(m[8:]) != msgOCRP || len(m) < 32 {
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
		m, err := readCtrl(p.conn)
		if err != nil {
			return fmt.Errorf("await message type %d: %w", typ, err)
		}
		if binary.BigEndian.Uint16(m[8:]) == typ {
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
	b := make([]byte, 12+len(payload))
	b[0], b[1] = 0x30, 0x01 // K and S bits, version 1
	binary.BigEndian.PutUint16(b[2:], 0x880B)
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	binary.BigEndian.PutUint16(b[6:], callID)
	binary.BigEndian.PutUint32(b[8:], greMarker<<16|uint32(seq))
	copy(b[12:], payload)
	return b
}

// sendGRE sends n crafted GRE v1 packets for callID from ns (address src)
// to dst through a raw socket.
func sendGRE(ns *lab.NS, src, dst string, callID uint16, n int) error {
	var c *net.IPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenIP("ip4:gre", &net.IPAddr{IP: net.ParseIP(src)})
		return err
	})
	if err != nil {
		return fmt.Errorf("GRE socket in %s: %w", ns.Name, err)
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
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err = d.Dial("tcp4", net.JoinHostPort(server, "1723"))
		return err
	})
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
