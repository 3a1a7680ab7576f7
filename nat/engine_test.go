package nat_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

func newEngine(r conntrack.Resolver, cfg nat.Config, l conntrack.Limits) (*nat.Engine, *nat.Worker) {
	e := nat.NewEngine(conntrack.New(l, nil), r, cfg)
	return e, e.NewWorker()
}

// edit returns a copy of p with f applied.
func edit(p []byte, f func(b []byte)) []byte {
	b := append([]byte(nil), p...)
	f(b)
	return b
}

// TestProcessControl: Call IDs in the control stream, both ways, with the
// TCP checksum updated so that it is still valid from scratch.
func TestProcessControl(t *testing.T) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	c1, c2 := newCtrlConn(client1), newCtrlConn(client2)
	for _, c := range []*ctrlConn{c1, c2} {
		for _, p := range c.handshake() {
			if v, r := w.Process(p, nat.HookControl, 1); v != nat.Accept || r != nat.ReasonControl {
				t.Fatalf("handshake: %v %v", v, r)
			}
		}
	}
	type step struct {
		name   string
		pkt    []byte
		want   nat.Verdict
		reason nat.Reason
		// payload the packet must carry afterwards (nil: unchanged)
		payload []byte
	}
	steps := []step{
		{"SCCRQ", c1.out(pptpMsg(mSCCRQ, 0x0100)), nat.Accept, nat.ReasonControl, nil},
		{"SCCRP", c1.in(pptpMsg(mSCCRP, 0x0100, 0x0100)), nat.Accept, nat.ReasonControl, nil},
		{"SCCRQ 2", c2.out(pptpMsg(mSCCRQ, 0x0100)), nat.Accept, nat.ReasonControl, nil},
		{"SCCRP 2", c2.in(pptpMsg(mSCCRP, 0x0100, 0x0100)), nat.Accept, nat.ReasonControl, nil},
		// Client 1's Call ID 0 is free: kept.
		{"OCRQ 1", c1.out(pptpMsg(mOCRQ, 0, 1)), nat.Accept, nat.ReasonControl, nil},
		// Client 2's 0 is taken towards this PAC: high byte kept, low byte counted up.
		{"OCRQ 2", c2.out(pptpMsg(mOCRQ, 0, 1)), nat.AcceptModified, nat.ReasonControl, pptpMsg(mOCRQ, 1, 1)},
		{"OCRP 1", c1.in(ocrp(pacID1, 0, 1)), nat.Accept, nat.ReasonControl, nil},
		// The PAC answers outer ID 1; the inside end gets its 0 back.
		{"OCRP 2", c2.in(ocrp(pacID2, 1, 1)), nat.AcceptModified, nat.ReasonControl, ocrp(pacID2, 0, 1)},
		// SLI from the PAC names the PNS's call: restored.
		{"SLI from PAC", c2.in(pptpMsg(mSLI, 1)), nat.AcceptModified, nat.ReasonControl, pptpMsg(mSLI, 0)},
		// SLI from the PNS names the PAC's call: untouched.
		{"SLI from PNS", c2.out(pptpMsg(mSLI, pacID2)), nat.Accept, nat.ReasonControl, nil},
		{"Echo", c2.out(pptpMsg(mEchoQ, 0, 7)), nat.Accept, nat.ReasonControl, nil},
		// Two messages in one segment: both rewritten.
		{"SLI+SLI", c2.in(append(pptpMsg(mSLI, 1), pptpMsg(mSLI, 1)...)), nat.AcceptModified, nat.ReasonControl,
			append(pptpMsg(mSLI, 0), pptpMsg(mSLI, 0)...)},
		{"CCRQ 2", c2.out(pptpMsg(mCCRQ, 0)), nat.AcceptModified, nat.ReasonControl, pptpMsg(mCCRQ, 1)},
		// CDN carries the PAC's own ID: untouched, and it ends the call.
		{"CDN 2", c2.in(pptpMsg(mCDN, pacID2, 0x0100)), nat.Accept, nat.ReasonControl, nil},
	}
	for _, s := range steps {
		in := append([]byte(nil), s.pkt...)
		v, r := w.Process(s.pkt, nat.HookControl, 5)
		if v != s.want || r != s.reason {
			t.Errorf("%s: %v %v, want %v %v", s.name, v, r, s.want, s.reason)
		}
		want := in
		if s.payload != nil {
			want = edit(in, func(b []byte) { copy(b[len(b)-len(s.payload):], s.payload) })
		}
		// Only the payload and the TCP checksum may change.
		if !bytes.Equal(s.pkt[:20+16], want[:20+16]) || !bytes.Equal(s.pkt[20+18:], want[20+18:]) {
			t.Errorf("%s:\n got %x\nwant %x (but the TCP checksum)", s.name, s.pkt, want)
		}
		if !tcpChecksumOK(s.pkt) || !ipv4ChecksumOK(s.pkt) {
			t.Errorf("%s: checksum not valid after the rewrite", s.name)
		}
	}
	// After CDN, GRE of call 2 is unknown.
	g := grePkt(pac.Addr(), public, greHdr(1, 1, pppFrame))
	if v, r := w.Process(g, nat.HookGREIn, 6); v != nat.Drop || r != nat.ReasonUnknownCall {
		t.Errorf("GRE after CDN: %v %v", v, r)
	}
}

// TestProcessGolden is the table of single packets through a worker whose
// table holds two calls (client 1: inside 0, outer 0, PAC 0x80; client 2:
// inside 0, outer 1, PAC 0x100).
func TestProcessGolden(t *testing.T) {
	greIn := func(id uint16) []byte { return grePkt(pac.Addr(), public, greHdr(id, 7, pppFrame)) }
	greOut := func(from netip.AddrPort, id uint16) []byte {
		return grePkt(from.Addr(), pac.Addr(), greHdr(id, 7, pppFrame))
	}
	ackOnly := []byte{0x20, 0x81, 0x88, 0x0b, 0, 0, 0, 1, 0, 0, 0, 5} // K, A, v1, Call ID 1, ack 5
	greV0 := grePkt(netip.MustParseAddr("203.0.113.9"), public,
		append([]byte{0x00, 0x00, 0x08, 0x00}, serialize(ip4(netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("10.9.9.8"), layers.IPProtocolICMPv4))...))
	ipv6 := serialize(&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolGRE,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}, gopacket.Payload(greHdr(1, 1, pppFrame)))
	frag := func(mf bool, off uint16) []byte {
		ip := ip4(pac.Addr(), public, layers.IPProtocolGRE)
		ip.Flags, ip.FragOffset = 0, off
		if mf {
			ip.Flags = layers.IPv4MoreFragments
		}
		return serialize(ip, gopacket.Payload(greHdr(1, 7, pppFrame)))
	}
	withIHL6 := func(p []byte) []byte { // an IPv4 option (NOP x4) before GRE
		b := append(append(append([]byte(nil), p[:20]...), 1, 1, 1, 1), p[20:]...)
		b[0] = 0x46
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		setIPv4Checksum(b)
		return b
	}
	http := tcpPkt(client1, netip.MustParseAddrPort("203.0.113.5:80"), 1, 1, psh, []byte("GET / HTTP/1.0\r\n\r\n"))
	udpIP := ip4(client1.Addr(), pac.Addr(), layers.IPProtocolUDP)
	udpL := &layers.UDP{SrcPort: 1723, DstPort: 1723}
	udpL.SetNetworkLayerForChecksum(udpIP)
	udp := serialize(udpIP, udpL, gopacket.Payload([]byte{1, 2, 3}))
	c1 := client1.Addr()
	c2 := client2.Addr()

	cases := []struct {
		name   string
		cfg    nat.Config
		hook   nat.Hook
		pkt    []byte
		want   nat.Verdict
		reason nat.Reason
		// out is the packet afterwards (nil: unchanged).
		out []byte
	}{
		{name: "GRE in call 2", hook: nat.HookGREIn, pkt: greIn(1), want: nat.AcceptModified, reason: nat.ReasonGREIn,
			out: grePkt(pac.Addr(), c2, greHdr(0, 7, pppFrame))},
		{name: "GRE in call 1", hook: nat.HookGREIn, pkt: greIn(0), want: nat.AcceptModified, reason: nat.ReasonGREIn,
			out: grePkt(pac.Addr(), c1, greHdr(0, 7, pppFrame))},
		{name: "GRE in ack-only", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, ackOnly), want: nat.AcceptModified,
			reason: nat.ReasonGREIn, out: grePkt(pac.Addr(), c2, edit(ackOnly, func(b []byte) { b[7] = 0 }))},
		{name: "GRE in with IP options", hook: nat.HookGREIn, pkt: withIHL6(greIn(1)), want: nat.AcceptModified,
			reason: nat.ReasonGREIn, out: withIHL6(grePkt(pac.Addr(), c2, greHdr(0, 7, pppFrame)))},
		{name: "GRE out call 2", hook: nat.HookGREOut, pkt: greOut(client2, pacID2), want: nat.AcceptModified,
			reason: nat.ReasonGREOut, out: grePkt(public, pac.Addr(), greHdr(pacID2, 7, pppFrame))},
		{name: "GRE out call 1", hook: nat.HookGREOut, pkt: greOut(client1, pacID1), want: nat.AcceptModified,
			reason: nat.ReasonGREOut, out: grePkt(public, pac.Addr(), greHdr(pacID1, 7, pppFrame))},
		{name: "GRE in unknown call", hook: nat.HookGREIn, pkt: greIn(2), want: nat.Drop, reason: nat.ReasonUnknownCall},
		{name: "GRE in from another peer", hook: nat.HookGREIn, pkt: grePkt(netip.MustParseAddr("203.0.113.6"), public, greHdr(1, 7, pppFrame)),
			want: nat.Drop, reason: nat.ReasonUnknownCall},
		{name: "GRE in to another address", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), netip.MustParseAddr("198.51.100.2"), greHdr(1, 7, pppFrame)),
			want: nat.Drop, reason: nat.ReasonUnknownCall},
		{name: "GRE out unknown call", hook: nat.HookGREOut, pkt: greOut(client1, pacID2), want: nat.Drop, reason: nat.ReasonUnknownCall},
		{name: "GRE out unknown client", hook: nat.HookGREOut, pkt: greOut(netip.MustParseAddrPort("192.168.1.99:1"), pacID1),
			want: nat.Drop, reason: nat.ReasonUnknownCall},
		{name: "local-gre accept", cfg: nat.Config{LocalGREAccept: true}, hook: nat.HookGREIn, pkt: greIn(2),
			want: nat.Accept, reason: nat.ReasonGRELocal},
		{name: "local-gre accept, known call still translated", cfg: nat.Config{LocalGREAccept: true}, hook: nat.HookGREIn,
			pkt: greIn(1), want: nat.AcceptModified, reason: nat.ReasonGREIn, out: grePkt(pac.Addr(), c2, greHdr(0, 7, pppFrame))},
		// The router's own GRE for no call it tracks: strict like inbound.
		{name: "local out GRE, no call", hook: nat.HookLocalOut, pkt: grePkt(public, pac.Addr(), greHdr(0x4444, 1, pppFrame)),
			want: nat.Drop, reason: nat.ReasonUnknownCall},
		{name: "local out GRE, no call, local-gre accept", cfg: nat.Config{LocalGREAccept: true}, hook: nat.HookLocalOut,
			pkt: grePkt(public, pac.Addr(), greHdr(0x4444, 1, pppFrame)), want: nat.Accept, reason: nat.ReasonGRELocal},
		{name: "GRE v0 in", hook: nat.HookGREIn, pkt: greV0, want: nat.Accept, reason: nat.ReasonNotPPTPGRE},
		{name: "GRE v0 out", hook: nat.HookGREOut, pkt: greV0, want: nat.Accept, reason: nat.ReasonNotPPTPGRE},
		// Regression: the parser went on into the tunnelled IPv4 and
		// took its header (here a PPTP control segment) for the outer one.
		{name: "GRE v0 carrying PPTP control", hook: nat.HookGREOut, pkt: grePkt(c2, pac.Addr(),
			append([]byte{0x00, 0x00, 0x08, 0x00}, newCtrlConn(client2).out(pptpMsg(mOCRQ, 0, 9))...)),
			want: nat.Accept, reason: nat.ReasonNotPPTPGRE},
		{name: "GRE v1 carrying IPv4", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public,
			append([]byte{0x20, 0x01, 0x08, 0x00, 0, 0, 0, 1}, newCtrlConn(client2).in(pptpMsg(mSLI, 1))...)),
			want: nat.Drop, reason: nat.ReasonGREProtocol},
		{name: "GRE v1 not PPP", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, edit(greHdr(1, 7, pppFrame), func(b []byte) { b[2], b[3] = 0x08, 0x00 })),
			want: nat.Drop, reason: nat.ReasonGREProtocol},
		{name: "GRE v1 not PPP out", hook: nat.HookGREOut, pkt: grePkt(c1, pac.Addr(), edit(greHdr(pacID1, 7, pppFrame), func(b []byte) { b[2], b[3] = 0x08, 0x00 })),
			want: nat.Accept, reason: nat.ReasonNotPPTPGRE},
		// To a local address only GRE v0 (ip_gre) may reach the stack.
		{name: "GRE v2 in", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, edit(greHdr(1, 7, pppFrame), func(b []byte) { b[1] = b[1]&^7 | 2 })),
			want: nat.Drop, reason: nat.ReasonGREVersion},
		{name: "GRE v7 in", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, edit(greHdr(1, 7, pppFrame), func(b []byte) { b[1] |= 7 })),
			want: nat.Drop, reason: nat.ReasonGREVersion},
		{name: "GRE v2 out", hook: nat.HookGREOut, pkt: grePkt(c1, pac.Addr(), edit(greHdr(pacID1, 7, pppFrame), func(b []byte) { b[1] = b[1]&^7 | 2 })),
			want: nat.Accept, reason: nat.ReasonNotPPTPGRE},
		{name: "GRE v1 with checksum bit", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, edit(greHdr(1, 7, pppFrame), func(b []byte) { b[0] |= 0x80 })),
			want: nat.Drop, reason: nat.ReasonMalformedGRE},
		{name: "GRE v1 without key", hook: nat.HookGREOut, pkt: grePkt(c1, pac.Addr(), edit(greHdr(pacID1, 7, pppFrame), func(b []byte) { b[0] &^= 0x20 })),
			want: nat.Drop, reason: nat.ReasonMalformedGRE},
		{name: "GRE v1 with flags", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, edit(greHdr(1, 7, pppFrame), func(b []byte) { b[1] |= 0x08 })),
			want: nat.Drop, reason: nat.ReasonMalformedGRE},
		{name: "GRE v1 header cut short", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, greHdr(1, 7, nil)[:10]),
			want: nat.Drop, reason: nat.ReasonMalformedGRE},
		{name: "GRE 3 bytes", hook: nat.HookGREIn, pkt: grePkt(pac.Addr(), public, []byte{0x30, 0x01, 0x88}),
			want: nat.Drop, reason: nat.ReasonMalformedGRE},
		{name: "IPv4 total length beyond the packet", hook: nat.HookGREIn, pkt: greIn(1)[:22], want: nat.Drop, reason: nat.ReasonMalformedGRE},
		{name: "IPv4 header cut short", hook: nat.HookGREIn, pkt: withIHL6(greIn(1))[:22], want: nat.Accept, reason: nat.ReasonTruncated},
		{name: "19 bytes", hook: nat.HookGREIn, pkt: greIn(1)[:19], want: nat.Accept, reason: nat.ReasonNotIPv4},
		{name: "empty", hook: nat.HookControl, pkt: []byte{}, want: nat.Accept, reason: nat.ReasonNotIPv4},
		{name: "TCP header cut short", hook: nat.HookControl, pkt: tcpPkt(client1, pac, 1, 1, psh, nil)[:30], want: nat.Accept, reason: nat.ReasonTruncated},
		{name: "IPv6", hook: nat.HookGREIn, pkt: ipv6, want: nat.Accept, reason: nat.ReasonNotIPv4},
		{name: "first fragment", hook: nat.HookGREIn, pkt: frag(true, 0), want: nat.Accept, reason: nat.ReasonFragment},
		{name: "later fragment", hook: nat.HookGREIn, pkt: frag(false, 3), want: nat.Accept, reason: nat.ReasonFragment},
		{name: "TCP not 1723", hook: nat.HookControl, pkt: http, want: nat.Accept, reason: nat.ReasonNotPPTP},
		{name: "UDP 1723", hook: nat.HookControl, pkt: udp, want: nat.Accept, reason: nat.ReasonNotPPTP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, w := newEngine(fakeResolver{}, c.cfg, conntrack.Limits{})
			setUp(w)
			in := append([]byte(nil), c.pkt...)
			before := e.Count(c.reason)
			v, r := w.Process(c.pkt, c.hook, 10)
			if v != c.want || r != c.reason {
				t.Fatalf("got %v %v, want %v %v", v, r, c.want, c.reason)
			}
			if e.Count(c.reason) != before+1 {
				t.Errorf("count of %v did not go up", c.reason)
			}
			want := c.out
			if want == nil {
				want = in
			}
			if !bytes.Equal(c.pkt, want) {
				t.Errorf("packet\n got %x\nwant %x", c.pkt, want)
			}
			if v == nat.AcceptModified && !ipv4ChecksumOK(c.pkt) {
				t.Errorf("bad IPv4 checksum after the rewrite")
			}
		})
	}
}

// TestProcessIdentity: a control connection the kernel does not NAT gives
// calls whose IDs and GRE pass untouched.
func TestProcessIdentity(t *testing.T) {
	_, w := newEngine(fakeResolver{identity: true}, nat.Config{}, conntrack.Limits{})
	c1, c2 := setUp(w)
	_ = c1
	p := c2.out(pptpMsg(mCCRQ, 0))
	in := append([]byte(nil), p...)
	if v, r := w.Process(p, nat.HookControl, 5); v != nat.Accept || r != nat.ReasonControl || !bytes.Equal(p, in) {
		t.Errorf("CCRQ on an identity connection: %v %v, rewritten %v", v, r, !bytes.Equal(p, in))
	}
	g := grePkt(client1.Addr(), pac.Addr(), greHdr(pacID1, 7, pppFrame))
	in = append([]byte(nil), g...)
	if v, r := w.Process(g, nat.HookGREOut, 5); v != nat.Accept || r != nat.ReasonGREIdentity || !bytes.Equal(g, in) {
		t.Errorf("GRE out of an identity call: %v %v", v, r)
	}
}

// TestProcessUntracked: the resolver cannot place the connection yet: the
// segment passes untouched and the next one asks again.
func TestProcessUntracked(t *testing.T) {
	_, w := newEngine(fakeResolver{refuse: true}, nat.Config{}, conntrack.Limits{})
	c := newCtrlConn(client1)
	p := c.out(pptpMsg(mOCRQ, 0, 1))
	in := append([]byte(nil), p...)
	if v, r := w.Process(p, nat.HookControl, 1); v != nat.Accept || r != nat.ReasonControlUntracked || !bytes.Equal(p, in) {
		t.Errorf("got %v %v", v, r)
	}
}

// TestProcessGap: a segment beyond a gap in the sequence space is dropped
// (TCP resends it), and passes once the gap is filled.
func TestProcessGap(t *testing.T) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	c1, _ := setUp(w)
	first := c1.out(pptpMsg(mEchoQ, 0, 1))
	second := c1.out(pptpMsg(mEchoQ, 0, 2))
	if v, r := w.Process(second, nat.HookControl, 5); v != nat.Drop || r != nat.ReasonControlGap {
		t.Errorf("beyond the gap: %v %v", v, r)
	}
	for _, p := range [][]byte{first, second} {
		if v, r := w.Process(p, nat.HookControl, 5); v != nat.Accept || r != nat.ReasonControl {
			t.Errorf("in order: %v %v", v, r)
		}
	}
}

// TestProcessRefused: a call over --max-calls-per-inside is refused with
// the OCRP Result Code rewritten to General Error, and its GRE dropped.
func TestProcessRefused(t *testing.T) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{MaxCallsPerInside: 1})
	c := newCtrlConn(client1)
	for _, p := range c.handshake() {
		w.Process(p, nat.HookControl, 1)
	}
	w.Process(c.out(pptpMsg(mOCRQ, 0, 1)), nat.HookControl, 1)
	w.Process(c.in(ocrp(pacID1, 0, 1)), nat.HookControl, 1)
	w.Process(c.out(pptpMsg(mOCRQ, 5, 2)), nat.HookControl, 1)
	p := c.in(ocrp(pacID2, 5, 1))
	if v, r := w.Process(p, nat.HookControl, 1); v != nat.AcceptModified || r != nat.ReasonControl {
		t.Fatalf("OCRP over the limit: %v %v", v, r)
	}
	if res := p[len(p)-32+16]; res != 2 || !tcpChecksumOK(p) {
		t.Errorf("OCRP over the limit: Result Code %d (want 2), checksum valid %v", res, tcpChecksumOK(p))
	}
	g := grePkt(pac.Addr(), public, greHdr(5, 1, pppFrame))
	if v, r := w.Process(g, nat.HookGREIn, 2); v != nat.Drop || r != nat.ReasonRefusedCall {
		t.Errorf("GRE in of the refused call: %v %v", v, r)
	}
	g = grePkt(client1.Addr(), pac.Addr(), greHdr(pacID1, 1, pppFrame))
	if v, r := w.Process(g, nat.HookGREOut, 2); v != nat.AcceptModified || r != nat.ReasonGREOut {
		t.Errorf("GRE out of the call within the limit: %v %v", v, r)
	}
}

// TestVerdictReasonNames: every reason has a name, for metrics.
func TestVerdictReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range nat.Reasons() {
		n := r.String()
		if n == "" || n == "invalid" || seen[n] {
			t.Errorf("reason %d named %q", r, n)
		}
		seen[n] = true
	}
	for v, n := range map[nat.Verdict]string{nat.Accept: "accept", nat.AcceptModified: "accept-modified", nat.Drop: "drop", 9: "invalid"} {
		if v.String() != n {
			t.Errorf("verdict %d: %q, want %q", v, v.String(), n)
		}
	}
}
