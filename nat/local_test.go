package nat_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// localConn is a control connection of the router itself: its segments
// are queued from OUTPUT (from the router) and INPUT (to it).
type localConn struct {
	local, remote netip.AddrPort
	lseq, rseq    uint32
}

func (c *localConn) out(payload []byte) []byte {
	p := tcpPkt(c.local, c.remote, c.lseq, c.rseq, psh, payload)
	c.lseq += uint32(len(payload))
	return p
}

func (c *localConn) in(payload []byte) []byte {
	p := tcpPkt(c.remote, c.local, c.rseq, c.lseq, psh, payload)
	c.rseq += uint32(len(payload))
	return p
}

// handshake opens the connection from the router (dial) or from the
// remote end (a client of the router's pptpd).
func (c *localConn) handshake(w *nat.Worker, dial bool) {
	if dial {
		w.Process(tcpPkt(c.local, c.remote, c.lseq-1, 0, layers.TCP{SYN: true}, nil), nat.HookControlOut, 1)
		w.Process(tcpPkt(c.remote, c.local, c.rseq-1, c.lseq, layers.TCP{SYN: true, ACK: true}, nil), nat.HookControlIn, 1)
		w.Process(tcpPkt(c.local, c.remote, c.lseq, c.rseq, layers.TCP{ACK: true}, nil), nat.HookControlOut, 1)
		return
	}
	w.Process(tcpPkt(c.remote, c.local, c.rseq-1, 0, layers.TCP{SYN: true}, nil), nat.HookControlIn, 1)
	w.Process(tcpPkt(c.local, c.remote, c.lseq-1, c.rseq, layers.TCP{SYN: true, ACK: true}, nil), nat.HookControlOut, 1)
	w.Process(tcpPkt(c.remote, c.local, c.rseq, c.lseq, layers.TCP{ACK: true}, nil), nat.HookControlIn, 1)
}

// TestProcessLocalCalls: the router dials the same PAC as a LAN client and
// both pick Call ID 0. The router's call is tracked from OUTPUT/INPUT
// without a resolver (the forwarded one's would refuse it), shares the
// outer Call IDs (its 0 is taken: it gets 1, restored on the way in), and
// exactly its GRE passes both ways; GRE for other Call IDs is dropped.
// The connection policy does not apply to the router's own calls.
func TestProcessLocalCalls(t *testing.T) {
	e, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	e.Table.SetPolicy(&conntrack.Policy{AllowInside: []netip.Prefix{inside}, AllowPeer: []netip.Prefix{netip.MustParsePrefix("203.0.113.5/32")}}, 1)
	c1 := newCtrlConn(client1)
	for _, p := range c1.handshake() {
		w.Process(p, nat.HookControl, 1)
	}
	w.Process(c1.out(pptpMsg(mOCRQ, 0, 1)), nat.HookControl, 2)
	w.Process(c1.in(ocrp(pacID1, 0, 1)), nat.HookControl, 3)

	const routerPAC = 0x0200 // the PAC's Call ID for the router's call
	r := &localConn{local: netip.AddrPortFrom(public, 50000), remote: pac, lseq: 5000, rseq: 7000}
	r.handshake(w, true)
	steps := []struct {
		name    string
		pkt     []byte
		hook    nat.Hook
		want    nat.Verdict
		payload []byte
	}{
		{"SCCRQ", r.out(pptpMsg(mSCCRQ, 0x0100)), nat.HookControlOut, nat.Accept, nil},
		{"SCCRP", r.in(pptpMsg(mSCCRP, 0x0100, 0x0100)), nat.HookControlIn, nat.Accept, nil},
		{"OCRQ", r.out(pptpMsg(mOCRQ, 0, 1)), nat.HookControlOut, nat.AcceptModified, pptpMsg(mOCRQ, 1, 1)},
		{"OCRP", r.in(ocrp(routerPAC, 1, 1)), nat.HookControlIn, nat.AcceptModified, ocrp(routerPAC, 0, 1)},
	}
	for _, s := range steps {
		in := append([]byte(nil), s.pkt...)
		if v, reason := w.Process(s.pkt, s.hook, 5); v != s.want || reason != nat.ReasonControl {
			t.Errorf("%s: %v %v, want %v control", s.name, v, reason, s.want)
		}
		if s.payload != nil {
			in = edit(in, func(b []byte) { copy(b[len(b)-len(s.payload):], s.payload) })
		}
		if !bytes.Equal(s.pkt[:36], in[:36]) || !bytes.Equal(s.pkt[38:], in[38:]) || !tcpChecksumOK(s.pkt) {
			t.Errorf("%s:\n got %x\nwant %x (but the TCP checksum)", s.name, s.pkt, in)
		}
	}

	// The PAC's GRE to the router names outer ID 1: the router's pptp gets 0.
	g := grePkt(pac.Addr(), public, greHdr(1, 1, pppFrame))
	if v, reason := w.Process(g, nat.HookGREIn, 6); v != nat.AcceptModified || reason != nat.ReasonGREIn ||
		!bytes.Equal(g, grePkt(pac.Addr(), public, greHdr(0, 1, pppFrame))) {
		t.Errorf("GRE in of the router's call: %v %v %x", v, reason, g)
	}
	// The LAN client's GRE still reaches the client.
	g = grePkt(pac.Addr(), public, greHdr(0, 1, pppFrame))
	if v, reason := w.Process(g, nat.HookGREIn, 6); v != nat.AcceptModified || reason != nat.ReasonGREIn ||
		!bytes.Equal(g, grePkt(pac.Addr(), client1.Addr(), greHdr(0, 1, pppFrame))) {
		t.Errorf("GRE in of the LAN client's call: %v %v", v, reason)
	}
	// The router's own GRE out passes untouched.
	g = grePkt(public, pac.Addr(), greHdr(routerPAC, 1, pppFrame))
	in := append([]byte(nil), g...)
	if v, reason := w.Process(g, nat.HookLocalOut, 6); v != nat.Accept || reason != nat.ReasonGREOut || !bytes.Equal(g, in) {
		t.Errorf("GRE out of the router's call: %v %v", v, reason)
	}
	// Strict pinholes: other Call IDs, either way.
	if v, reason := w.Process(grePkt(pac.Addr(), public, greHdr(7, 1, pppFrame)), nat.HookGREIn, 6); v != nat.Drop || reason != nat.ReasonUnknownCall {
		t.Errorf("GRE in for no call: %v %v", v, reason)
	}
	if v, reason := w.Process(grePkt(public, pac.Addr(), greHdr(0x999, 1, pppFrame)), nat.HookLocalOut, 6); v != nat.Drop || reason != nat.ReasonUnknownCall {
		t.Errorf("GRE out for no call: %v %v", v, reason)
	}
	e.SetConfig(nat.Config{LocalGREAccept: true})
	if v, reason := w.Process(grePkt(public, pac.Addr(), greHdr(0x999, 1, pppFrame)), nat.HookLocalOut, 6); v != nat.Accept || reason != nat.ReasonGRELocal {
		t.Errorf("GRE out for no call, --local-gre accept: %v %v", v, reason)
	}

	roles := map[string]conntrack.Role{}
	for _, c := range e.Table.Calls() {
		roles[c.Inside.String()] = c.Role
		if c.Inside == conntrack.AddrFrom(public) && (c.OuterID != 1 || c.InsideID != 0 || !c.Conn.Local || c.PacketsIn != 1 || c.PacketsOut != 1) {
			t.Errorf("router's call: %+v", c)
		}
	}
	if roles[public.String()] != conntrack.RoleLocalPNS || roles[client1.Addr().String()] != conntrack.RolePNSInside {
		t.Errorf("roles %v", roles)
	}
	if conntrack.RoleLocalPNS.String() != "local-pns" || conntrack.RoleLocalPAC.String() != "local-pac" {
		t.Errorf("role names %s %s", conntrack.RoleLocalPNS, conntrack.RoleLocalPAC)
	}
}

// TestProcessLocalPAC: a client outside calls the router's own pptpd
// (the connection first seen in INPUT): a local-pac call whose GRE passes
// both ways without --local-gre accept; other Call IDs are dropped.
func TestProcessLocalPAC(t *testing.T) {
	e, w := newEngine(fakeResolver{refuse: true}, nat.Config{}, conntrack.Limits{MaxCallsPerInside: 1})
	const routerID = 0x0040
	for i, client := range []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:40000"), netip.MustParseAddrPort("203.0.113.8:40000")} {
		r := &localConn{local: netip.AddrPortFrom(public, 1723), remote: client, lseq: 5000, rseq: 7000}
		r.handshake(w, false)
		w.Process(r.in(pptpMsg(mSCCRQ, 0x0100)), nat.HookControlIn, 2)
		w.Process(r.out(pptpMsg(mSCCRP, 0x0100, 0x0100)), nat.HookControlOut, 2)
		w.Process(r.in(pptpMsg(mOCRQ, 0x0300, 1)), nat.HookControlIn, 2)
		p := r.out(ocrp(routerID+uint16(i), 0x0300, 1))
		if v, reason := w.Process(p, nat.HookControlOut, 3); v != nat.Accept || reason != nat.ReasonControl {
			// Not refused: the per-inside limit does not count the router's own.
			t.Fatalf("OCRP from the router's pptpd %d: %v %v", i, v, reason)
		}
		g := grePkt(client.Addr(), public, greHdr(routerID+uint16(i), 1, pppFrame))
		if v, reason := w.Process(g, nat.HookGREIn, 4); v != nat.AcceptModified || reason != nat.ReasonGREIn {
			t.Errorf("GRE in of call %d: %v %v", i, v, reason)
		}
		g = grePkt(public, client.Addr(), greHdr(0x0300, 1, pppFrame))
		if v, reason := w.Process(g, nat.HookLocalOut, 4); v != nat.Accept || reason != nat.ReasonGREOut {
			t.Errorf("GRE out of call %d: %v %v", i, v, reason)
		}
	}
	calls := e.Table.Calls()
	if len(calls) != 2 || calls[0].Role != conntrack.RoleLocalPAC || calls[1].Role != conntrack.RoleLocalPAC ||
		calls[0].State != conntrack.StateEstablished {
		t.Errorf("calls %+v", calls)
	}
	if v, reason := w.Process(grePkt(netip.MustParseAddr("203.0.113.7"), public, greHdr(0x41, 1, pppFrame)), nat.HookGREIn, 4); v != nat.Drop || reason != nat.ReasonUnknownCall {
		t.Errorf("GRE in for the other client's call from the wrong peer: %v %v", v, reason)
	}
	// The kernel fast paths do not carry the router's own calls.
	if d, _ := e.Table.Desired(nil); len(d) != 0 {
		t.Errorf("desired fast-path mappings %+v", d)
	}
}
