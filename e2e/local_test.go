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
	first := waitEchoes(l, "LCP opened and echoes answered on both ends of both calls", ends, srv, 2, 25*time.Second)
	waitRising(l, "echo replies rising on both ends", ends, srv, first, 5*time.Second)

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
	waitRising(l, "echo replies still rising after the stray GRE", ends, srv, waitEchoes(l, "echoes", ends, srv, 2, time.Second), 5*time.Second)
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
	first := waitEchoes(l, "LCP opened and echoes answered on both ends of both calls", ends, pptpd, 2, 25*time.Second)
	waitRising(l, "echo replies rising on both ends", ends, pptpd, first, 5*time.Second)

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
