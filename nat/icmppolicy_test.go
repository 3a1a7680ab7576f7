package nat_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// TestICMPPolicyTable is the policy's golden table: what an inside client
// gets of the ICMP errors about its call's GRE (icmp_in: translated to it;
// anything else: dropped, counted under that reason).
func TestICMPPolicyTable(t *testing.T) {
	want := `
3/0 icmp_net_host_unreachable
3/1 icmp_net_host_unreachable
3/2 icmp_proto_port_unreachable
3/3 icmp_proto_port_unreachable
3/4 mtu 0 icmp_mtu_too_small
3/4 mtu 68 icmp_mtu_too_small
3/4 mtu 575 icmp_mtu_too_small
3/4 mtu 576 icmp_in
3/4 mtu 1280 icmp_in
3/4 mtu 1499 icmp_in
3/4 mtu 1500 icmp_frag_needed_bogus
3/4 mtu 65535 icmp_frag_needed_bogus
3/4 mtu 1280 no DF icmp_frag_needed_bogus
3/4 mtu 68 no DF icmp_mtu_too_small
3/5 icmp_net_host_unreachable
3/6 icmp_net_host_unreachable
3/7 icmp_net_host_unreachable
3/8 icmp_net_host_unreachable
3/9 icmp_prohibited
3/10 icmp_prohibited
3/11 icmp_net_host_unreachable
3/12 icmp_net_host_unreachable
3/13 icmp_prohibited
3/14 icmp_prohibited
3/15 icmp_prohibited
3/16 icmp_net_host_unreachable
3/255 icmp_net_host_unreachable
11/0 icmp_in
11/1 icmp_in
11/255 icmp_in
0/0 not_pptp
12/0 not_pptp
`
	var b strings.Builder
	b.WriteString("\n")
	// The quoted packet: 1500 bytes with DF, as a full-sized GRE packet is.
	row := func(typ, code uint8, mtu int) {
		if mtu < 0 {
			fmt.Fprintf(&b, "%d/%d %s\n", typ, code, nat.ICMPPolicy(typ, code, 1500, 1500, true))
			return
		}
		fmt.Fprintf(&b, "%d/%d mtu %d %s\n", typ, code, mtu, nat.ICMPPolicy(typ, code, uint16(mtu), 1500, true))
	}
	for code := range 17 {
		if code == 4 {
			for _, mtu := range []int{0, 68, 575, 576, 1280, 1499, 1500, 65535} {
				row(3, 4, mtu)
			}
			for _, mtu := range []int{1280, 68} {
				fmt.Fprintf(&b, "3/4 mtu %d no DF %s\n", mtu, nat.ICMPPolicy(3, 4, uint16(mtu), 1500, false))
			}
			continue
		}
		row(3, uint8(code), -1)
	}
	row(3, 255, -1)
	row(11, 0, -1)
	row(11, 1, -1)
	row(11, 255, -1)
	row(0, 0, -1)
	row(12, 0, -1)
	if b.String() != want {
		t.Errorf("ICMPPolicy table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestICMPPolicyDrops: forged errors about a live call that would end it
// are dropped untouched and counted by reason; the call stays.
func TestICMPPolicyDrops(t *testing.T) {
	out1 := grePkt(public, pac.Addr(), greHdr(pacID1, 7, pppFrame))
	cases := []struct {
		typ, code uint8
		mtu       uint32
		reason    nat.Reason
	}{
		{3, 0, 0, nat.ReasonICMPNetHostUnreachable},
		{3, 1, 0, nat.ReasonICMPNetHostUnreachable},
		{3, 2, 0, nat.ReasonICMPProtoPortUnreachable},
		{3, 3, 0, nat.ReasonICMPProtoPortUnreachable},
		{3, 9, 0, nat.ReasonICMPProhibited},
		{3, 10, 0, nat.ReasonICMPProhibited},
		{3, 13, 0, nat.ReasonICMPProhibited},
		{3, 4, 68, nat.ReasonICMPMTUTooSmall},
		{3, 4, 0, nat.ReasonICMPMTUTooSmall},
		// The quoted packet (38 bytes) fits in 1280: no router sent this.
		{3, 4, 1280, nat.ReasonICMPFragNeededBogus},
	}
	e, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	setUp(w)
	for _, c := range cases {
		in := icmpErr(router, public, c.typ, c.code, c.mtu, out1, 28)
		p := bytes.Clone(in)
		if v, r := w.Process(p, nat.HookGREIn, 5); v != nat.Drop || r != c.reason {
			t.Errorf("%d/%d mtu %d: %v %v, want drop %v", c.typ, c.code, c.mtu, v, r, c.reason)
		}
		if !bytes.Equal(p, in) {
			t.Errorf("%d/%d: a dropped error was rewritten", c.typ, c.code)
		}
	}
	for r, n := range map[nat.Reason]uint64{nat.ReasonICMPNetHostUnreachable: 2, nat.ReasonICMPProtoPortUnreachable: 2,
		nat.ReasonICMPProhibited: 3, nat.ReasonICMPMTUTooSmall: 2, nat.ReasonICMPFragNeededBogus: 1, nat.ReasonICMPIn: 0} {
		if got := e.Count(r); got != n {
			t.Errorf("count %v = %d, want %d", r, got, n)
		}
	}
	// The same kinds about no known call reach the router untouched.
	unknown := grePkt(public, pac.Addr(), greHdr(0x4444, 7, pppFrame))
	if v, r := w.Process(icmpErr(router, public, 3, 2, 0, unknown, 28), nat.HookGREIn, 6); v != nat.Accept || r != nat.ReasonICMPUnknownCall {
		t.Errorf("protocol unreachable about no call: %v %v", v, r)
	}
	if st := e.Table.Stats(); st["calls_active"] != 2 {
		t.Errorf("calls_active = %d after the forged errors, want 2", st["calls_active"])
	}
}
