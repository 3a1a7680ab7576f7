package ha_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/conntrack"
)

var (
	public = addr("203.0.113.1")
	pac    = addr("198.51.100.10")
)

func addr(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

func ep(a conntrack.Addr, port uint16) conntrack.Endpoint {
	return conntrack.Endpoint{Addr: a, Port: port}
}

// resolver: 192.168/16 is inside, the public address is public.
type resolver struct{}

func (resolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	in, out := src, dst
	if in.Addr[0] != 192 {
		in, out = dst, src
	}
	return conntrack.ConnSpec{Inside: in, Outside: out, Public: ep(public, in.Port)}, true
}

// pns is a client behind the gateway talking to pac over one control
// connection, fed through a table (the gateway's packet path, minus the
// packets).
type pns struct {
	tb   testing.TB
	tbl  *conntrack.Table
	ends [2]conntrack.Endpoint // inside end, outside end
	next [2]uint32
}

func newPNS(tb testing.TB, tbl *conntrack.Table, client conntrack.Addr, port uint16) *pns {
	p := &pns{tb: tb, tbl: tbl, ends: [2]conntrack.Endpoint{ep(client, port), ep(pac, 1723)}, next: [2]uint32{1000, 5000}}
	p.seg(0, true, nil)
	p.seg(1, true, nil)
	p.seg(0, false, nil)
	p.seg(0, false, pptpmsg.NewSCCRQ("pns"))
	p.seg(1, false, pptpmsg.NewSCCRP("pac"))
	return p
}

// seg sends one segment from end dir (0 inside) and returns the payload
// as the gateway forwards it.
func (p *pns) seg(dir int, syn bool, payload []byte) []byte {
	p.tb.Helper()
	b := append([]byte(nil), payload...)
	s := &conntrack.Segment{Src: p.ends[dir], Dst: p.ends[1-dir], Seq: p.next[dir], Ack: p.next[1-dir],
		SYN: syn, ACK: !syn || dir == 1, Payload: b}
	p.tbl.Control(s, time.Now().UnixNano(), resolver{})
	if syn {
		p.next[dir]++
	}
	p.next[dir] += uint32(len(payload))
	return b
}

// call sets up a call with the client's Call ID id; it returns the outer ID.
func (p *pns) call(id, pacID uint16) uint16 {
	p.tb.Helper()
	out := p.seg(0, false, pptpmsg.NewOCRQ(id, id))
	outer := binary.BigEndian.Uint16(out[12:])
	in := p.seg(1, false, pptpmsg.NewOCRP(pacID, outer, 1))
	if got := binary.BigEndian.Uint16(in[14:]); got != id {
		p.tb.Fatalf("OCRP peer Call ID %#04x, want %#04x", got, id)
	}
	return outer
}

// on moves the connection to another gateway's table (a failover).
func (p *pns) on(tbl *conntrack.Table) *pns { p.tbl = tbl; return p }
