package nat_test

import (
	"net/netip"
	"testing"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

var (
	pppLCPAckPAP      = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x08, 0x03, 0x04, 0xc0, 0x23}
	pppLCPAckMSCHAPv2 = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x09, 0x03, 0x05, 0xc2, 0x23, 0x81}
	pppCCPAck128H     = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x01, 0x00, 0x00, 0x40}
)

// TestProcessPolicyClears: the PPP negotiation in GRE is read on the way;
// a call that negotiates PAP under --require-auth mschapv2 is cleared by
// that very packet, and its GRE is dropped both ways from then on, while
// the other client's MS-CHAPv2 call goes on.
func TestProcessPolicyClears(t *testing.T) {
	e, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	e.Table.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}, MinMPPE: 128}, 1)
	setUp(w)
	steps := []struct {
		name   string
		pkt    []byte
		hook   nat.Hook
		v      nat.Verdict
		reason nat.Reason
	}{
		{"client 2 acks MS-CHAPv2", grePkt(client2.Addr(), pac.Addr(), greHdr(pacID2, 1, pppLCPAckMSCHAPv2)), nat.HookGREOut, nat.AcceptModified, nat.ReasonGREOut},
		{"client 1 acks PAP: cleared", grePkt(client1.Addr(), pac.Addr(), greHdr(pacID1, 1, pppLCPAckPAP)), nat.HookGREOut, nat.Drop, nat.ReasonRefusedCall},
		{"client 1 GRE in after", grePkt(pac.Addr(), public, greHdr(0, 2, pppFrame)), nat.HookGREIn, nat.Drop, nat.ReasonRefusedCall},
		{"client 1 GRE out after", grePkt(client1.Addr(), pac.Addr(), greHdr(pacID1, 2, pppFrame)), nat.HookGREOut, nat.Drop, nat.ReasonUnknownCall}, // a tombstone has no outbound mapping
		{"client 2 CCP 128 stateless", grePkt(pac.Addr(), public, greHdr(1, 2, pppCCPAck128H)), nat.HookGREIn, nat.AcceptModified, nat.ReasonGREIn},
		{"client 2 encrypted", grePkt(pac.Addr(), public, greHdr(1, 3, pppFrame)), nat.HookGREIn, nat.AcceptModified, nat.ReasonGREIn},
	}
	for _, s := range steps {
		if v, r := w.Process(s.pkt, s.hook, 5); v != s.v || r != s.reason {
			t.Errorf("%s: %v %v, want %v %v", s.name, v, r, s.v, s.reason)
		}
	}
	st := e.Table.Stats()
	if st["calls_cleared_policy"] != 1 || st["calls_active"] != 1 {
		t.Errorf("stats: cleared %d active %d", st["calls_cleared_policy"], st["calls_active"])
	}
	for _, c := range e.Table.Calls() {
		if c.Inside.IP() == client2.Addr() && (c.Auth != alg.AuthMSCHAPv2 || c.MPPE != "128-bit stateless" || c.State != conntrack.StateEstablished) {
			t.Errorf("client 2's call: %+v", c)
		}
		if c.Inside.IP() == client1.Addr() && (c.Auth != alg.AuthPAP || c.State == conntrack.StateEstablished) {
			t.Errorf("client 1's call: %+v", c)
		}
	}
}

// TestProcessControlDenied: a control connection from an inside address
// outside --allow-inside is dropped from its first resolved packet on, so
// its TCP handshake fails.
func TestProcessControlDenied(t *testing.T) {
	e, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	e.Table.SetPolicy(&conntrack.Policy{AllowInside: []netip.Prefix{netip.PrefixFrom(client1.Addr(), 32)}}, 1)
	c := newCtrlConn(client2)
	for i, p := range c.handshake() {
		if v, r := w.Process(p, nat.HookControl, 1); v != nat.Drop || r != nat.ReasonControlDenied {
			t.Errorf("handshake packet %d: %v %v", i, v, r)
		}
	}
	ok := newCtrlConn(client1)
	for i, p := range ok.handshake() {
		if v, r := w.Process(p, nat.HookControl, 1); v != nat.Accept || r != nat.ReasonControl {
			t.Errorf("allowed handshake packet %d: %v %v", i, v, r)
		}
	}
	if n := e.Table.Stats()["control_denied"]; n != 3 {
		t.Errorf("control_denied = %d, want 3", n)
	}
	if n := e.Count(nat.ReasonControlDenied); n != 3 {
		t.Errorf("reason control_denied counted %d", n)
	}
}
