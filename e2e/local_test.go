//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// TestGWLocalPNS: the router dials a VPN itself (pptp-linux on the
// gateway) while a LAN client calls the same pptpd through it, on every
// GRE path, with the default --local-gre drop. Both calls' LCP echoes flow
// both ways; `calls --json` lists the router's call as local-pns (inside
// and public: the gateway's own address) beside the client's pns-inside,
// with distinct outer Call IDs (both pptp-linux pick Call ID 0, so one of
// them is renumbered) and GRE counted both ways on the router's own; GRE
// to the gateway for an unknown Call ID is still dropped and counted.
func TestGWLocalPNS(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"queue", "kernel", "bpf"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			localPNS(t, path)
		})
	}
}

func localPNS(t *testing.T, path string) {
	tp := newGWTopo(t, 1)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, Args: []string{"--gre-path", path}})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	router := tp.gw.StartPPTPClient(lab.PPTPClientConfig{Name: "pptp-router", Server: serverIP})
	lan := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Name: "pptp-lan", Server: serverIP, LocalBind: clientIP(0)})
	ends := []end{{"router", router.Status}, {"lan", lan.Status}}
	waitPPP(l, ends, srv, 25*time.Second)

	calls := waitCalls(l, gw, 2, func(cs []lab.GWCall) error {
		if err := distinctOuter(cs); err != nil {
			return err
		}
		for _, c := range cs {
			if c.Role == "local-pns" && (c.PacketsIn == 0 || c.PacketsOut == 0) {
				return fmt.Errorf("router's call %s: no GRE counted in one direction", c.ID)
			}
		}
		return nil
	}, 5*time.Second)
	roles := map[string]lab.GWCall{}
	for _, c := range calls {
		roles[c.Role] = c
		t.Logf("call %s", c)
	}
	if c, ok := roles["local-pns"]; !ok || c.InsideAddr != publicIP || c.PublicAddr != publicIP || c.PeerAddr != serverIP {
		t.Errorf("router's call: %+v (present %v), want local-pns inside and public %s, peer %s", c, ok, publicIP, serverIP)
	}
	if c, ok := roles["pns-inside"]; !ok || c.InsideAddr != clientIP(0) || c.PublicAddr != publicIP {
		t.Errorf("LAN client's call: %+v (present %v), want pns-inside from %s", c, ok, clientIP(0))
	}

	// Strict pinholes: GRE for a Call ID no call has, from the server to
	// the gateway, is dropped by the daemon (not handed to the router's
	// own pptp, which --local-gre accept would do).
	const stray = 0x7777
	before := gw.MustStats()
	if err := sendGRE(tp.srv, serverIP, publicIP, stray, 5); err != nil {
		t.Fatal(err)
	}
	l.MustWaitFor("5 unknown-call drops", func() error {
		if d := gw.MustStats()["gre_dropped_unknown_call"] - before["gre_dropped_unknown_call"]; d < 5 {
			return fmt.Errorf("gre_dropped_unknown_call +%d", d)
		}
		return nil
	}, 5*time.Second)
	// Forged ICMP errors about the router's own GRE, from its peer: the
	// silence (issue 12) covers the router's call too, each counted by
	// reason; then both calls carry on.
	before = gw.MustStats()
	if err := sendForgedICMP(tp.srv, serverIP, roles["local-pns"], 3); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for _, f := range forgedICMPCases() {
		want["packets_"+f.reason] += 3
	}
	l.MustWaitFor("forged ICMP about the router's call counted by reason", func() error {
		s := gw.MustStats()
		for k, n := range want {
			if d := s[k] - before[k]; d < n {
				return fmt.Errorf("%s rose by %d, want %d", k, d, n)
			}
		}
		return nil
	}, 5*time.Second)
	time.Sleep(time.Second) // long enough for a fatal error to have ended a call
	waitRising(l, "echo replies still rising after the stray GRE and the forged ICMP", ends, srv,
		waitEchoes(l, "echoes", ends, srv, 2, time.Second), 5*time.Second)
	healthy(t, gw.MustStats())
}

// TestGWLocalPAC: pptpd runs on the gateway itself (road warriors) and is
// called from outside (to the public address) and from the LAN (to the
// gateway's inside address) at once, with the default --local-gre drop:
// both calls' LCP echoes flow, `calls --json` lists both as local-pac with
// the gateway's own address inside and public, and GRE to the gateway for
// an unknown Call ID is still dropped.
func TestGWLocalPAC(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true})
	pptpd := tp.gw.StartPPTPD(lab.PPTPDConfig{Name: "pptpd-router"})
	outside := tp.srv.StartPPTPClient(lab.PPTPClientConfig{Name: "pptp-warrior", Server: publicIP})
	lan := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Name: "pptp-lan", Server: lab.LANGateway, LocalBind: clientIP(0)})
	ends := []end{{"outside", outside.Status}, {"lan", lan.Status}}
	waitPPP(l, ends, pptpd, 25*time.Second)

	calls := waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	local := map[string]string{serverIP: publicIP, clientIP(0): lab.LANGateway} // peer -> the gateway's address
	for _, c := range calls {
		t.Logf("call %s", c)
		if c.Role != "local-pac" || c.InsideAddr != local[c.PeerAddr] || c.PublicAddr != local[c.PeerAddr] {
			t.Errorf("call %s: want local-pac with the gateway's own address %s inside and public", c, local[c.PeerAddr])
		}
	}
	before := gw.MustStats()
	if err := sendGRE(tp.srv, serverIP, publicIP, 0x7777, 5); err != nil {
		t.Fatal(err)
	}
	l.MustWaitFor("5 unknown-call drops", func() error {
		if d := gw.MustStats()["gre_dropped_unknown_call"] - before["gre_dropped_unknown_call"]; d < 5 {
			return fmt.Errorf("gre_dropped_unknown_call +%d", d)
		}
		return nil
	}, 5*time.Second)
	healthy(t, gw.MustStats())
}

// TestGWLocalCallIDShared: the router's own call and a LAN client's pick
// the same Call ID towards one server, whose GRE to the public address
// could not tell them apart: the router's call, set up second, is
// renumbered in its own control messages (OUTPUT/INPUT) and its GRE
// restored on the way in, and both calls' echoes flow.
func TestGWLocalCallIDShared(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	lan := tp.clients[0].StartPPTPCli(lab.PPTPCliConfig{Name: "pptpcli-lan", Server: serverIP, Local: clientIP(0), CallID: 1000})
	waitEstablished(l, lan)
	router := tp.gw.StartPPTPCli(lab.PPTPCliConfig{Name: "pptpcli-router", Server: serverIP, Local: publicIP, CallID: 1000})
	ends := []end{{"lan", lan.Status}, {"router", router.Status}}
	waitPPP(l, ends, srv, 20*time.Second)
	calls := waitCalls(l, gw, 2, distinctOuter, 5*time.Second)
	for _, c := range calls {
		t.Logf("call %s", c)
		switch c.Role {
		case "pns-inside":
			if c.InsideCallID != 1000 || c.OuterCallID != 1000 {
				t.Errorf("LAN client's call %s: want Call ID 1000 kept", c)
			}
		case "local-pns":
			if c.InsideCallID != 1000 || c.OuterCallID == 1000 || c.PacketsIn == 0 || c.PacketsOut == 0 {
				t.Errorf("router's call %s: want Call ID 1000 renumbered, GRE both ways", c)
			}
		default:
			t.Errorf("call %s: unexpected role", c)
		}
	}
	if st := gw.MustStats(); st["rewrites"] == 0 {
		t.Errorf("stats rewrites = 0")
	}
	healthy(t, gw.MustStats())
}
