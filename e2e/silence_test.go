//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// Silence towards PPTP peers and rules that survive the operator's
// firewall (issue 12, items 1 and 2). The barrage of malformed_test.go
// sends the forged ICMP errors built here.

// thirdOutside is an outside address that is neither a call's peer nor
// the gateway's (on the server's host in the PNS topology).
const thirdOutside = "198.51.100.3"

// forgedICMP is one kind of ICMP error about a call's GRE, as a router on
// the outside path (or anyone who guessed the Call ID) would send it to
// the public address, and the reason pptpgw counts it under.
type forgedICMP struct {
	typ, code uint8
	mtu       uint16
	reason    string
}

func forgedICMPCases() []forgedICMP {
	return []forgedICMP{
		{3, 0, 0, "icmp_net_host_unreachable"},
		{3, 1, 0, "icmp_net_host_unreachable"},
		{3, 2, 0, "icmp_proto_port_unreachable"},
		{3, 3, 0, "icmp_proto_port_unreachable"},
		{3, 9, 0, "icmp_prohibited"},
		{3, 10, 0, "icmp_prohibited"},
		{3, 13, 0, "icmp_prohibited"},
		{3, 4, 68, "icmp_mtu_too_small"},
		{3, 4, 0, "icmp_mtu_too_small"},
		// About a 136-byte packet without DF: no router sent this, and a
		// fragmentation-needed ends pptp-linux's call (EMSGSIZE).
		{3, 4, 1280, "icmp_frag_needed_bogus"},
		// Translated: a raw GRE socket takes it as a soft error.
		{11, 0, 0, "icmp_in"},
	}
}

func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// quotedGRE is what an ICMP error about the call's GRE towards its peer
// quotes: the IPv4 header (public address to peer) and the first 8 bytes
// of the GRE header, carrying the peer's Call ID.
func quotedGRE(c lab.GWCall) []byte {
	q := make([]byte, 28)
	q[0], q[8], q[9] = 0x45, 63, 47
	binary.BigEndian.PutUint16(q[2:], 20+16+100)
	copy(q[12:16], net.ParseIP(c.PublicAddr).To4())
	copy(q[16:20], net.ParseIP(c.PeerAddr).To4())
	binary.BigEndian.PutUint16(q[10:], inetChecksum(q[:20]))
	copy(q[20:], []byte{0x30, 0x01, 0x88, 0x0b, 0, 100})
	binary.BigEndian.PutUint16(q[26:], c.PeerCallID)
	return q
}

// sendForgedICMP sends every forgedICMPCases error about call c, reps
// times, from ns (address src) to the call's public address.
func sendForgedICMP(ns *lab.NS, src string, c lab.GWCall, reps int) error {
	var conn *net.IPConn
	err := ns.Do(func() (err error) {
		conn, err = net.ListenIP("ip4:icmp", &net.IPAddr{IP: net.ParseIP(src)})
		return err
	})
	if err != nil {
		return fmt.Errorf("ICMP socket in %s: %w", ns.Name, err)
	}
	defer conn.Close()
	to := &net.IPAddr{IP: net.ParseIP(c.PublicAddr)}
	for range reps {
		for _, f := range forgedICMPCases() {
			m := append([]byte{f.typ, f.code, 0, 0, 0, 0, 0, 0}, quotedGRE(c)...)
			binary.BigEndian.PutUint16(m[6:], f.mtu)
			binary.BigEndian.PutUint16(m[2:], inetChecksum(m))
			if _, err := conn.WriteToIP(m, to); err != nil {
				return fmt.Errorf("send ICMP %d/%d: %w", f.typ, f.code, err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// nsIPTables is a go-iptables handle on ns's iptables (a wrapper script
// in the lab directory runs it there), for rules.Verify.
func nsIPTables(t *testing.T, l *lab.Lab, ns *lab.NS) rules.IPTables {
	t.Helper()
	path := l.Path("iptables-" + ns.Name)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s iptables \"$@\"\n", ns.Name)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ipt, err := rules.New(path)
	if err != nil {
		t.Fatal(err)
	}
	return ipt
}

// TestSilenceRulesRepair: during two live calls the operator reloads the
// firewall (`iptables-restore` of a ruleset without pptpgw's chains, not
// --noflush, as netfilter-persistent does): within 10 s the daemon has
// put its rules back (rules.Verify finds nothing missing), counted and
// logged it, and both calls' LCP echoes carry on. Then with
// --repair-rules=false the same reload is only reported (rules_missing).
func TestSilenceRulesRepair(t *testing.T) {
	t.Parallel()
	// On the kernel path the calls' GRE never needs the iptables rules; on
	// the queue path it is the nf_tables silence table that keeps the
	// stack's answers from the peer until the rules are back.
	for _, path := range []string{"kernel", "queue"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			rulesRepair(t, path)
		})
	}
}

func rulesRepair(t *testing.T, path string) {
	tp := newGWTopo(t, 2)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info", Args: []string{"--gre-path", path}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	c2 := tp.clients[1].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(1), CallID: 1000})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 1, 20*time.Second)
	before := waitCalls(l, gw, 2, trafficBothWays, 10*time.Second)
	ipt := nsIPTables(t, l, tp.gw)
	cfg := rules.Config{}
	if d, err := rules.Verify(ipt, cfg); err != nil || len(d) != 0 {
		t.Fatalf("rules before the reload: %q, %v", d, err)
	}
	installed := iptablesSave(t, tp.gw)

	// The operator's ruleset: their NAT rule, and nothing of pptpgw's.
	ruleset := l.Path("operator.rules")
	if err := os.WriteFile(ruleset, []byte("*nat\n-A POSTROUTING -o wan -j MASQUERADE\nCOMMIT\n*raw\nCOMMIT\n*mangle\nCOMMIT\n*filter\nCOMMIT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gap, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	st := gw.MustStats()
	icmpOut := tp.gw.Capture("cap-icmp-out", "wan", "icmp and src host "+publicIP)
	reload := time.Now()
	tp.gw.MustRun("iptables-restore", ruleset)
	if d, _ := rules.Verify(ipt, cfg); len(d) == 0 {
		t.Fatal("iptables-restore left pptpgw's rules in place: the reload was not a reload")
	}
	l.MustWaitFor("rules back after the reload", func() error {
		d, err := rules.Verify(ipt, cfg)
		if err != nil {
			return err
		}
		if len(d) > 0 {
			return fmt.Errorf("%d differences: %s", len(d), d[0])
		}
		return nil
	}, 10*time.Second)
	took := time.Since(reload)
	if got := iptablesSave(t, tp.gw); got != installed {
		t.Errorf("after the repair:\n%s\nwant:\n%s", got, installed)
	}
	s := gw.MustStats()
	// One repair, or two when a check read one table before the reload
	// and the other after it.
	if d := s["rules_repaired_total"] - st["rules_repaired_total"]; d != 27 || s["rules_missing"] != 0 || s["rules_repairs_total"] == st["rules_repairs_total"] {
		t.Errorf("stats: rules_repaired_total +%d (want +27), rules_repairs_total %d, rules_missing %d",
			d, s["rules_repairs_total"], s["rules_missing"])
	}
	if !logHas(gw, "rules repaired") {
		t.Errorf("the repair was not logged")
	}
	waitRising(l, "echo replies rising on both ends after the reload", ends, srv, gap, 10*time.Second)
	// Until the rules were back, GRE the queues no longer took reached the
	// stack (queue path); its answers never left.
	if n, err := lab.CountPackets(icmpOut.Stop(), ""); err != nil || n != 0 {
		t.Errorf("the gateway sent %d ICMP messages to the outside (%v), want none", n, err)
	}
	if s := gw.MustStats(); path == "queue" && s["silence_icmp_dropped"] == 0 {
		t.Errorf("silence_icmp_dropped = 0 on the queue path: nothing reached the stack during the gap?")
	}
	after := waitCalls(l, gw, 2, nil, 5*time.Second)
	for i := range before {
		if before[i].ID != after[i].ID {
			t.Errorf("call changed: %s -> %s", before[i], after[i])
		}
	}
	t.Logf("rules back %v after the reload; stats %v", took.Round(100*time.Millisecond), map[string]uint64{
		"rules_repaired_total": s["rules_repaired_total"], "rules_repairs_total": s["rules_repairs_total"],
		"rules_checks_total": s["rules_checks_total"], "rules_missing": s["rules_missing"],
		"silence_icmp_dropped": gw.MustStats()["silence_icmp_dropped"]})

	// --repair-rules=false: reported, counted, not repaired.
	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw on SIGTERM: %v", err)
	}
	tp.gw.MustPptpgw("rules", "install")
	report := tp.gw.StartGateway(lab.GatewayConfig{Name: "report", LogLevel: "info", Args: []string{"--gre-path", path, "--repair-rules=false"}})
	tp.gw.MustRun("iptables-restore", ruleset)
	l.MustWaitFor("the difference reported", func() error {
		s := report.MustStats()
		if s["rules_missing"] != 27 {
			return fmt.Errorf("rules_missing %d, want 27", s["rules_missing"])
		}
		return nil
	}, 10*time.Second)
	if d, _ := rules.Verify(ipt, cfg); len(d) != 27 {
		t.Errorf("--repair-rules=false repaired: %d differences left, want 27", len(d))
	}
	if s := report.MustStats(); s["rules_repaired_total"] != 0 || !logHas(report, "not repaired") {
		t.Errorf("--repair-rules=false: rules_repaired_total %d, logged %v", s["rules_repaired_total"], logHas(report, "not repaired"))
	}
}

// TestSilenceGREv0Local: GRE v0 to the public address still reaches the
// router's own stack (where an ip_gre tunnel would take it; this kernel
// has no ip_gre, so a raw GRE socket stands in), counted as not_pptp_gre,
// while GRE v0 to an address without a listener is answered by the stack
// and the answer never leaves the router.
func TestSilenceGREv0Local(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	tp.srv.AddAddr("eth0", thirdOutside+"/24")
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info"})
	st := gw.MustStats()
	icmpOut := tp.gw.Capture("cap-icmp-out", "wan", "icmp and src host "+publicIP)
	v0 := []greCase{{"v0 IPv4", append([]byte{0, 0, 0x08, 0x00}, make([]byte, 20)...), false, "not_pptp_gre"}}

	// Nobody listens: the stack answers protocol-unreachable, which the
	// silence rule drops.
	for _, src := range []string{serverIP, thirdOutside} {
		if err := sendGREPayloads(tp.srv, src, publicIP, v0, 3); err != nil {
			t.Fatal(err)
		}
	}
	// A raw GRE socket on the router receives GRE v0.
	var sock *net.IPConn
	if err := tp.gw.Do(func() (err error) {
		sock, err = net.ListenIP("ip4:gre", &net.IPAddr{IP: net.ParseIP(publicIP)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if err := sendGREPayloads(tp.srv, thirdOutside, publicIP, v0, 1); err != nil {
		t.Fatal(err)
	}
	sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := sock.ReadFromIP(buf)
	if err != nil {
		t.Fatalf("GRE v0 did not reach the router's stack: %v", err)
	}
	// A raw IPv4 socket reads the IP header too.
	if ihl := int(buf[0]&0x0f) * 4; n < ihl+4 || buf[ihl+1]&7 != 0 || from.IP.String() != thirdOutside {
		t.Errorf("read %x from %s, want GRE v0 from %s", buf[:n], from, thirdOutside)
	}
	l.MustWaitFor("GRE v0 counted", func() error {
		s := gw.MustStats()
		if d := s["packets_not_pptp_gre"] - st["packets_not_pptp_gre"]; d != 7 {
			return fmt.Errorf("packets_not_pptp_gre rose by %d, want 7", d)
		}
		return nil
	}, 5*time.Second)
	silenced, err := tp.gw.Run("iptables", "-t", "raw", "-L", rules.ChainSilence, "-nvx")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := lab.CountPackets(icmpOut.Stop(), ""); err != nil || n != 0 {
		t.Errorf("the gateway sent %d ICMP messages to the outside (%v), want none", n, err)
	}
	if !strings.Contains(silenced, "DROP") {
		t.Errorf("iptables -t raw -L %s:\n%s", rules.ChainSilence, silenced)
	}
	t.Logf("%s", silenced)
}
