//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
	"github.com/pptpgw/pptpgw/e2e/ppp"
)

// The live gateway: the real pptpgw binary in a gateway namespace with its
// own rules (no kernel helper), between real pptp-linux / pptpcli clients
// and a real pptpd.

const publicIP = lab.PublicIP

// gwTopo is the lab's basic shape (lab.Basic) with pptpgw on the gateway
// instead of the kernel's helper.
type gwTopo struct {
	l       *lab.Lab
	gw, srv *lab.NS
	clients []*lab.NS
}

// startClients starts a pptp-linux client towards the server in every
// client namespace: pptp1, pptp2, ...
func (tp *gwTopo) startClients() ([]end, []*lab.PPTPClient) {
	var ends []end
	var clients []*lab.PPTPClient
	for i, c := range tp.clients {
		pc := c.StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(i)})
		clients = append(clients, pc)
		ends = append(ends, end{fmt.Sprintf("pptp%d", i+1), pc.Status})
	}
	return ends, clients
}

func newGWTopo(t *testing.T, nClients int) *gwTopo {
	l := lab.New(t)
	b := l.Basic(nClients)
	return &gwTopo{l: l, gw: b.GW, srv: b.Srv, clients: b.Clients}
}

// end is one end of a call whose PPP status the test can read.
type end struct {
	name   string
	status func() (ppp.Status, error)
}

// callPair is a call's two PPP ends: the client's and the server's.
type callPair struct {
	client, server ppp.Status
}

// pairsOf reads the client end of every call and finds its server end by
// magic number in srv's status files.
func pairsOf(ends []end, srv *lab.PPTPD) (map[string]callPair, error) {
	out := map[string]callPair{}
	for _, e := range ends {
		c, err := e.status()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		s, err := srv.PeerOf(c.Magic)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (client: %s)", e.name, err, counters(c))
		}
		out[e.name] = callPair{c, s}
	}
	return out, nil
}

func counters(s ppp.Status) string {
	return fmt.Sprintf("lcp_opened=%v echo_req_sent=%d echo_rep_recv=%d echo_rep_sent=%d frames_in=%d frames_out=%d",
		s.LCPOpened, s.EchoReqSent, s.EchoRepRecv, s.EchoRepSent, s.FramesIn, s.FramesOut)
}

// waitEchoes waits until every call has LCP opened and at least min echo
// replies on both ends, and returns the counters it saw.
func waitEchoes(l *lab.Lab, what string, ends []end, srv *lab.PPTPD, min uint64, timeout time.Duration) map[string]callPair {
	l.T.Helper()
	return waitPairs(l, what, ends, srv, timeout, func(name string, cp callPair) error {
		if err := lab.CheckEcho(cp.client, min); err != nil {
			return fmt.Errorf("%s client side: %w", name, err)
		}
		if err := lab.CheckEcho(cp.server, min); err != nil {
			return fmt.Errorf("%s server side: %w", name, err)
		}
		return nil
	})
}

// waitRising waits until the echo replies received and sent on both ends
// of every call have gone past those in since.
func waitRising(l *lab.Lab, what string, ends []end, srv *lab.PPTPD, since map[string]callPair, timeout time.Duration) map[string]callPair {
	l.T.Helper()
	return waitPairs(l, what, ends, srv, timeout, func(name string, cp callPair) error {
		old := since[name]
		for _, side := range []struct {
			name     string
			now, old ppp.Status
		}{{"client", cp.client, old.client}, {"server", cp.server, old.server}} {
			if side.now.EchoRepRecv <= side.old.EchoRepRecv || side.now.EchoRepSent <= side.old.EchoRepSent {
				return fmt.Errorf("%s %s side: echo_rep_recv %d -> %d, echo_rep_sent %d -> %d: not rising",
					name, side.name, side.old.EchoRepRecv, side.now.EchoRepRecv, side.old.EchoRepSent, side.now.EchoRepSent)
			}
		}
		return nil
	})
}

// waitPairs waits until check passes for the client and server status of
// every call, and returns the statuses it saw.
func waitPairs(l *lab.Lab, what string, ends []end, srv *lab.PPTPD, timeout time.Duration, check func(name string, cp callPair) error) map[string]callPair {
	l.T.Helper()
	var got map[string]callPair
	l.MustWaitFor(what, func() error {
		p, err := pairsOf(ends, srv)
		if err != nil {
			return err
		}
		for name, cp := range p {
			if err := check(name, cp); err != nil {
				return err
			}
		}
		got = p
		return nil
	}, timeout)
	return got
}

// waitCalls waits until the gateway lists exactly n calls in state
// "established" for which ok (nil: any) holds, and returns them.
// waitEstablished waits for c's first call to be established.
func waitEstablished(l *lab.Lab, c *lab.PPTPCli) {
	l.MustWaitFor(c.Name+"'s call set up", func() error {
		s, err := c.Status()
		if err != nil {
			return err
		}
		if len(s.Calls) == 0 || s.Calls[0].State != "established" {
			return fmt.Errorf("calls %+v", s.Calls)
		}
		return nil
	}, 10*time.Second)
}

// shutdownCall makes srv end c's call with a CDN (PPTPD.ShutdownCall).
func shutdownCall(t *testing.T, srv *lab.PPTPD, c *lab.PPTPCli) {
	t.Helper()
	s, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ShutdownCall(s.Magic); err != nil {
		t.Fatal(err)
	}
}

// waitPPP waits until every end's PPP link is up with LCP echoes answered
// on both ends (within timeout), then sees the echo replies keep rising.
func waitPPP(l *lab.Lab, ends []end, srv *lab.PPTPD, timeout time.Duration) {
	first := waitEchoes(l, fmt.Sprintf("LCP opened and echoes answered on both ends of %d calls", len(ends)), ends, srv, 2, timeout)
	waitRising(l, "echo replies rising on both ends", ends, srv, first, 5*time.Second)
}

func waitCalls(l *lab.Lab, g *lab.Gateway, n int, ok func([]lab.GWCall) error, timeout time.Duration) []lab.GWCall {
	l.T.Helper()
	var got []lab.GWCall
	l.MustWaitFor(fmt.Sprintf("%d established calls in `pptpgw calls --json`", n), func() error {
		calls, err := g.Calls()
		if err != nil {
			return err
		}
		if len(calls) != n {
			return fmt.Errorf("%d calls: %s", len(calls), callList(calls))
		}
		for _, c := range calls {
			if c.State != "established" {
				return fmt.Errorf("call not established: %s", c)
			}
		}
		if ok != nil {
			if err := ok(calls); err != nil {
				return fmt.Errorf("%w: %s", err, callList(calls))
			}
		}
		got = calls
		return nil
	}, timeout)
	return got
}

func callList(calls []lab.GWCall) string {
	var s []string
	for _, c := range calls {
		s = append(s, c.String())
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// trafficBothWays checks GRE counters in both directions of every call.
func trafficBothWays(calls []lab.GWCall) error {
	for _, c := range calls {
		if c.PacketsIn == 0 || c.PacketsOut == 0 || c.BytesIn == 0 || c.BytesOut == 0 {
			return fmt.Errorf("call %s: no GRE counted in one direction", c.ID)
		}
	}
	return nil
}

func distinctOuter(calls []lab.GWCall) error {
	seen := map[string]bool{}
	for _, c := range calls {
		k := fmt.Sprintf("%s/%d", c.PeerAddr, c.OuterCallID)
		if seen[k] {
			return fmt.Errorf("outer call ID %s used twice", k)
		}
		seen[k] = true
	}
	return nil
}

// distinctFlowing: distinct outer Call IDs and GRE counted both ways.
func distinctFlowing(calls []lab.GWCall) error {
	if err := distinctOuter(calls); err != nil {
		return err
	}
	return trafficBothWays(calls)
}

// healthy checks the counters that must stay zero on a clean run: no
// framing errors, no verdict the kernel refused, no handler panic, nothing
// dropped for a full queue.
func healthy(t *testing.T, st map[string]uint64) {
	t.Helper()
	for _, k := range []string{"malformed", "queue_verdict_errors", "queue_handler_panics", "queue_enobufs", "queue_drops"} {
		if v, ok := st[k]; !ok || v != 0 {
			t.Errorf("stats %s = %d (present %v), want 0", k, v, ok)
		}
	}
	t.Logf("stats: %v", st)
}

// noKernelHelper fails the test if any conntrack entry of ns has the
// kernel's PPTP helper attached.
func noKernelHelper(t *testing.T, ns *lab.NS) {
	t.Helper()
	out, err := ns.Run("conntrack", "-L")
	if err != nil {
		t.Fatalf("conntrack -L: %v", err)
	}
	if strings.Contains(out, "helper=pptp") {
		t.Errorf("the kernel's PPTP helper is attached in %s:\n%s", ns.Name, out)
	}
	if !strings.Contains(out, "dport=1723") {
		t.Errorf("conntrack -L in %s shows no control connection:\n%s", ns.Name, out)
	}
}

// TestGWThreeClients: three pptp-linux clients behind one MASQUERADE
// address call one pptpd at the same time through pptpgw. Every call's LCP
// opens and echoes flow both ways; the gateway lists three established
// calls with distinct outer IDs and GRE counted in both directions; the
// kernel's helper is nowhere.
func TestGWThreeClients(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 3)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, Args: []string{"--gre-path", "queue"}}) // counts GRE the queues see
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	ends, _ := tp.startClients()
	waitPPP(l, ends, srv, 20*time.Second)

	calls := waitCalls(l, gw, 3, distinctFlowing, 5*time.Second)
	insides := map[string]bool{}
	for _, c := range calls {
		if c.Role != "pns-inside" || c.PublicAddr != publicIP || c.PeerAddr != serverIP {
			t.Errorf("call %s: want role pns-inside, public %s, peer %s", c, publicIP, serverIP)
		}
		if want := fmt.Sprintf("%s/%s/%d", c.PublicAddr, c.PeerAddr, c.OuterCallID); c.ID != want {
			t.Errorf("call id %q, want %q", c.ID, want)
		}
		insides[c.InsideAddr] = true
	}
	var addrs []string
	for a := range insides {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	if want := []string{clientIP(0), clientIP(1), clientIP(2)}; strings.Join(addrs, ",") != strings.Join(want, ",") {
		t.Errorf("inside addresses %v, want %v", addrs, want)
	}
	st := gw.MustStats()
	for _, k := range []string{"gre_in", "gre_out", "control_messages", "packets_total"} {
		if st[k] == 0 {
			t.Errorf("stats %s = 0", k)
		}
	}
	if st["calls_active"] != 3 {
		t.Errorf("stats calls_active = %d, want 3", st["calls_active"])
	}
	healthy(t, st)
	// The tables people read show the same calls.
	table := tp.gw.MustPptpgw("calls", "--admin-socket", gw.AdminSocket)
	for _, c := range calls {
		if !strings.Contains(table, c.ID) {
			t.Errorf("pptpgw calls does not list %s:\n%s", c.ID, table)
		}
	}
	if stats := tp.gw.MustPptpgw("stats", "--admin-socket", gw.AdminSocket); !strings.Contains(stats, "gre_dropped_unknown_call") {
		t.Errorf("pptpgw stats:\n%s", stats)
	}
	noKernelHelper(t, tp.gw)
	t.Logf("calls: %s", callList(calls))
}

// TestGWSameInsideCallID: two pptpcli clients use the same Call ID (1000)
// towards one pptpd. The gateway keeps the first and gives the second the
// next ID of the same bucket (1001); both calls carry LCP echoes.
func TestGWSameInsideCallID(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 2)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	var ends []end
	for i, c := range tp.clients {
		cli := c.StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(i), CallID: 1000})
		ends = append(ends, end{cli.Name, cli.Status})
		if i == 0 {
			waitEstablished(l, cli) // one after the other, so which client keeps 1000 is known
		}
	}
	waitPPP(l, ends, srv, 20*time.Second)
	calls := waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	byInside := map[string]lab.GWCall{}
	for _, c := range calls {
		byInside[c.InsideAddr] = c
		if c.InsideCallID != 1000 {
			t.Errorf("call %s: inside call ID %d, want 1000", c, c.InsideCallID)
		}
	}
	for i, want := range []uint16{1000, 1001} {
		c, ok := byInside[clientIP(i)]
		if !ok {
			t.Errorf("no call from %s: %s", clientIP(i), callList(calls))
			continue
		}
		if c.OuterCallID != want {
			t.Errorf("call from %s: outer call ID %d, want %d", clientIP(i), c.OuterCallID, want)
		}
	}
	// Each client sees its own Call ID in the reply (the gateway rewrote
	// the peer Call ID of OCRP and of GRE back to 1000).
	for _, e := range ends {
		s, err := e.status()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Calls) != 1 || s.Calls[0].CallID != 1000 || s.Calls[0].State != "established" || s.Calls[0].GREIn == 0 {
			t.Errorf("%s: calls %+v", e.name, s.Calls)
		}
	}
	if st := gw.MustStats(); st["rewrites"] == 0 {
		t.Errorf("stats rewrites = 0 with two calls sharing an inside Call ID")
	}
	t.Logf("calls: %s", callList(calls))
}

// inServer is pptpd's host behind the gateway in the port-forward tests.
const inServer = "192.168.1.10"

// newPACTopo builds the port-forward topology: pptpd's host behind the
// gateway, TCP 1723 of the public address DNATed to it, MASQUERADE on the
// way out, and one namespace per outside address on the WAN bridge.
func newPACTopo(l *lab.Lab, outside []string) (gwNS, srvNS *lab.NS, outs []*lab.NS) {
	gwNS, srvNS = l.AddNS("gw"), l.AddNS("srv")
	l.Link(gwNS, "lan", "192.168.1.1/24", srvNS, "eth0", inServer+"/24")
	srvNS.DefaultRoute("192.168.1.1")
	gwNS.AddBridge("wan", publicIP+"/24")
	for i, a := range outside {
		o := l.AddNS(fmt.Sprintf("o%d", i+1))
		l.LinkToBridge(o, "eth0", a+"/24", gwNS, "wan", fmt.Sprintf("wan%d", i+1))
		outs = append(outs, o)
	}
	gwNS.EnableForwarding()
	gwNS.MustRun("iptables", "-t", "nat", "-A", "PREROUTING", "-d", publicIP, "-p", "tcp", "--dport", "1723",
		"-j", "DNAT", "--to-destination", inServer)
	gwNS.MustRun("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	return gwNS, srvNS, outs
}

// TestGWPACInside: pptpd behind the gateway, TCP 1723 of the public
// address port-forwarded (DNAT) to it, called by two outside clients.
//
//	srv 192.168.1.10 ── lan 192.168.1.1 [gw: pptpgw] wan 198.51.100.1 ─┬─ o1 198.51.100.10 (pptp-linux)
//	                                                                   └─ o2 198.51.100.11 (pptpcli)
func TestGWPACInside(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	outside := []string{"198.51.100.10", "198.51.100.11"}
	gwNS, srvNS, outs := newPACTopo(l, outside)
	gw := gwNS.StartGateway(lab.GatewayConfig{InstallRules: true})
	srv := srvNS.StartPPTPD(lab.PPTPDConfig{})

	c1 := outs[0].StartPPTPClient(lab.PPTPClientConfig{Server: publicIP, LocalBind: outside[0]})
	c2 := outs[1].StartPPTPCli(lab.PPTPCliConfig{Server: publicIP, Local: outside[1], CallID: 7})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	waitPPP(l, ends, srv, 20*time.Second)
	calls := waitCalls(l, gw, 2, distinctFlowing, 5*time.Second)
	peers := map[string]bool{}
	for _, c := range calls {
		if c.Role != "pac-inside" || c.InsideAddr != inServer || c.PublicAddr != publicIP {
			t.Errorf("call %s: want role pac-inside, inside %s, public %s", c, inServer, publicIP)
		}
		peers[c.PeerAddr] = true
	}
	for _, a := range outside {
		if !peers[a] {
			t.Errorf("no call with peer %s: %s", a, callList(calls))
		}
	}
	noKernelHelper(t, gwNS)
	t.Logf("calls: %s", callList(calls))
}

// TestGWDoubleNAT: two gateways in a row, each masquerading and running its
// own pptpgw. Call IDs are chosen so that one call is rewritten by both:
// c4 (behind gw2 only) holds 1001 first; c2 and c3 both use 1000 behind
// gw1, which keeps 1000 for c2 and gives c3 1001; gw2 then keeps 1000 and
// moves gw1's 1001 to 1002.
//
//	c1 192.168.1.10 ─┐
//	c2 192.168.1.11 ─┼─ lan 192.168.1.1 [gw1] 192.168.2.2 ─┬─ 192.168.2.1 [gw2] 198.51.100.1 ── 198.51.100.2 [srv]
//	c3 192.168.1.12 ─┘                       c4 192.168.2.10 ─┘
func TestGWDoubleNAT(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	gw1NS, gw2NS, srvNS := l.AddNS("gw1"), l.AddNS("gw2"), l.AddNS("srv")
	gw1NS.AddBridge("lan", "192.168.1.1/24")
	var clients []*lab.NS
	for i := range 3 {
		c := l.AddNS(fmt.Sprintf("c%d", i+1))
		l.LinkToBridge(c, "eth0", clientIP(i)+"/24", gw1NS, "lan", fmt.Sprintf("lan%d", i+1))
		c.DefaultRoute("192.168.1.1")
		clients = append(clients, c)
	}
	const gw1Out, c4IP = "192.168.2.2", "192.168.2.10"
	gw2NS.AddBridge("lan", "192.168.2.1/24")
	l.LinkToBridge(gw1NS, "wan", gw1Out+"/24", gw2NS, "lan", "lan1")
	gw1NS.DefaultRoute("192.168.2.1")
	c4NS := l.AddNS("c4")
	l.LinkToBridge(c4NS, "eth0", c4IP+"/24", gw2NS, "lan", "lan2")
	c4NS.DefaultRoute("192.168.2.1")
	l.Link(gw2NS, "wan", publicIP+"/24", srvNS, "eth0", serverIP+"/24")
	for _, g := range []*lab.NS{gw1NS, gw2NS} {
		g.EnableForwarding()
		g.MustRun("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	}
	gw1 := gw1NS.StartGateway(lab.GatewayConfig{Name: "pptpgw1", InstallRules: true})
	gw2 := gw2NS.StartGateway(lab.GatewayConfig{Name: "pptpgw2", InstallRules: true})
	srv := srvNS.StartPPTPD(lab.PPTPDConfig{})

	// One after the other, so that who keeps which ID is known.
	c4 := c4NS.StartPPTPCli(lab.PPTPCliConfig{Name: "pptpcli4", Server: serverIP, Local: c4IP, CallID: 1001})
	waitEstablished(l, c4)
	c2 := clients[1].StartPPTPCli(lab.PPTPCliConfig{Name: "pptpcli2", Server: serverIP, Local: clientIP(1), CallID: 1000})
	waitEstablished(l, c2)
	c3 := clients[2].StartPPTPCli(lab.PPTPCliConfig{Name: "pptpcli3", Server: serverIP, Local: clientIP(2), CallID: 1000})
	waitEstablished(l, c3)
	c1 := clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli2", c2.Status}, {"pptpcli3", c3.Status}, {"pptpcli4", c4.Status}}
	waitPPP(l, ends, srv, 20*time.Second)
	calls1 := waitCalls(l, gw1, 3, distinctFlowing, 5*time.Second)
	calls2 := waitCalls(l, gw2, 4, distinctFlowing, 5*time.Second)
	for _, c := range calls1 {
		if c.Role != "pns-inside" || c.PublicAddr != gw1Out || c.PeerAddr != serverIP || !strings.HasPrefix(c.InsideAddr, "192.168.1.") {
			t.Errorf("pptpgw1: call %s: want public %s, peer %s, inside 192.168.1.*", c, gw1Out, serverIP)
		}
	}
	for _, c := range calls2 {
		if c.Role != "pns-inside" || c.PublicAddr != publicIP || c.PeerAddr != serverIP || (c.InsideAddr != gw1Out && c.InsideAddr != c4IP) {
			t.Errorf("pptpgw2: call %s: want public %s, peer %s, inside %s or %s", c, publicIP, serverIP, gw1Out, c4IP)
		}
	}
	// Outer IDs at each gateway, found by (inside address, inside ID).
	outer := func(calls []lab.GWCall, inside string, id uint16) uint16 {
		t.Helper()
		for _, c := range calls {
			if c.InsideAddr == inside && c.InsideCallID == id {
				return c.OuterCallID
			}
		}
		t.Errorf("no call from %s/%d: %s", inside, id, callList(calls))
		return 0
	}
	if got := outer(calls2, c4IP, 1001); got != 1001 {
		t.Errorf("pptpgw2: c4's call 1001 went out as %d, want 1001", got)
	}
	for _, w := range []struct {
		inside       string
		atGW1, atGW2 uint16
	}{{clientIP(1), 1000, 1000}, {clientIP(2), 1001, 1002}} {
		mid := outer(calls1, w.inside, 1000)
		if mid != w.atGW1 {
			t.Errorf("pptpgw1: call 1000 from %s went out as %d, want %d", w.inside, mid, w.atGW1)
		}
		if got := outer(calls2, gw1Out, mid); got != w.atGW2 {
			t.Errorf("pptpgw2: call %d from %s went out as %d, want %d", mid, gw1Out, got, w.atGW2)
		}
	}
	t.Logf("pptpgw1 calls: %s", callList(calls1))
	t.Logf("pptpgw2 calls: %s", callList(calls2))
	noKernelHelper(t, gw1NS)
	noKernelHelper(t, gw2NS)
}

// callGone waits until the gateway no longer lists a call from inside.
func callGone(l *lab.Lab, g *lab.Gateway, inside string, timeout time.Duration) {
	l.T.Helper()
	l.MustWaitFor("the call from "+inside+" removed from the gateway", func() error {
		calls, err := g.Calls()
		if err != nil {
			return err
		}
		for _, c := range calls {
			if c.InsideAddr == inside {
				return fmt.Errorf("still there: %s", c)
			}
		}
		return nil
	}, timeout)
}

// callFrom returns the gateway's call from inside.
func callFrom(t *testing.T, calls []lab.GWCall, inside string) lab.GWCall {
	t.Helper()
	for _, c := range calls {
		if c.InsideAddr == inside {
			return c
		}
	}
	t.Fatalf("no call from %s: %s", inside, callList(calls))
	return lab.GWCall{}
}

// logHas reports whether the gateway's log has a line with every one of
// the strings.
func logHas(g *lab.Gateway, strs ...string) bool {
	b, _ := os.ReadFile(g.Log)
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, s := range strs {
			all = all && strings.Contains(line, s)
		}
		if all {
			return true
		}
	}
	return false
}

// TestGWTeardown: a call's mapping goes with its call: on CDN (pptpd
// shutting a call down), when the client clears it (CCRQ: pptpd 1.4.0
// answers by closing the connection, without the CDN it should send), and
// when the control connection is reset. GRE for those calls afterwards, and
// for a call that never existed, is dropped and counted, and reaches no
// inside host.
func TestGWTeardown(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 3)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	lan := tp.gw.Capture("cap-lan", "lan", "ip proto 47")
	wan := tp.gw.Capture("cap-wan", "wan", "tcp port 1723 or ip proto 47")

	c1 := tp.clients[0].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(0), CallID: 1000})
	c2 := tp.clients[1].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(1)})
	ends := []end{{"pptpcli1", c1.Status}, {"pptp2", c2.Status}}
	waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 1, 20*time.Second)
	p3, err := dialPNS(tp.clients[2], clientIP(2), serverIP, 2000)
	if err != nil {
		t.Fatalf("hand-made PNS: %v", err)
	}
	defer p3.close()
	calls := waitCalls(l, gw, 3, nil, 10*time.Second)
	gone := []lab.GWCall{callFrom(t, calls, clientIP(0)), callFrom(t, calls, clientIP(1)), callFrom(t, calls, clientIP(2))}

	// CDN: pptpd shuts the pptpcli call down.
	shutdownCall(t, srv, c1)
	callGone(l, gw, clientIP(0), 5*time.Second)
	if !logHas(gw, "call torn down", gone[0].ID, `"reason": "cdn"`) {
		t.Errorf("call %s was not torn down by its CDN", gone[0].ID)
	}
	l.MustWaitFor("pptpcli saw the CDN", func() error {
		s, err := c1.Status()
		if err != nil {
			return err
		}
		if s.CDNRecv == 0 {
			return fmt.Errorf("cdn_recv 0, calls %+v", s.Calls)
		}
		return nil
	}, 3*time.Second)
	// pptp-linux on SIGTERM clears its call (CCRQ).
	c2.PPTP.Signal(syscall.SIGTERM)
	callGone(l, gw, clientIP(1), 5*time.Second)
	// The hand-made PNS resets its control connection.
	if err := p3.reset(); err != nil {
		t.Fatal(err)
	}
	callGone(l, gw, clientIP(2), 5*time.Second)
	if !logHas(gw, "call torn down", gone[2].ID, `"reason": "rst"`) {
		t.Errorf("call %s was not torn down by the RST", gone[2].ID)
	}
	st := gw.MustStats()
	if st["calls_active"] != 0 {
		t.Errorf("stats calls_active = %d after every call ended", st["calls_active"])
	}

	// GRE for the ended calls, and for one that never existed, from the
	// server; and from the inside end of the reset call, which would leave
	// with its private source address if it passed.
	const n = 5
	ids := []uint16{gone[0].OuterCallID, gone[1].OuterCallID, gone[2].OuterCallID, 4242}
	for _, id := range ids {
		if err := sendGRE(tp.srv, serverIP, publicIP, id, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := sendGRE(tp.clients[2], clientIP(2), serverIP, gone[2].PeerCallID, n); err != nil {
		t.Fatal(err)
	}
	var after map[string]uint64
	l.MustWaitFor("crafted GRE counted as dropped", func() error {
		after = gw.MustStats()
		if d := after["gre_dropped_unknown_call"] - st["gre_dropped_unknown_call"]; d < uint64(n*(len(ids)+1)) {
			return fmt.Errorf("gre_dropped_unknown_call rose by %d, want >= %d", d, n*(len(ids)+1))
		}
		return nil
	}, 3*time.Second)
	time.Sleep(200 * time.Millisecond)
	lanPcap, wanPcap := lan.Stop(), wan.Stop()
	count := func(path, filter string) int {
		n, err := lab.CountPackets(path, filter)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	isCrafted := fmt.Sprintf("ip proto 47 and ip[28:2] = 0x%x", greMarker)
	if got := count(wanPcap, isCrafted+" and src host "+serverIP); got != n*len(ids) {
		t.Errorf("%d crafted GRE packets arrived at the gateway, want %d", got, n*len(ids))
	}
	if got := count(wanPcap, isCrafted+" and dst host "+serverIP); got != 0 {
		t.Errorf("%d crafted GRE packets from the inside left the gateway", got)
	}
	if n := count(lanPcap, isCrafted+" and dst net 192.168.1.0/24"); n != 0 {
		t.Errorf("%d crafted GRE packets reached the inside", n)
	}
	if n := count(wanPcap, "tcp and tcp[tcpflags] & tcp-rst != 0 and src host "+publicIP); n == 0 {
		t.Errorf("the hand-made PNS's RST did not leave the gateway")
	}
	if done, err := gw.Exited(); done {
		t.Fatalf("pptpgw exited: %v", err)
	}
	t.Logf("gre_dropped_unknown_call %d -> %d; ended calls %s", st["gre_dropped_unknown_call"],
		after["gre_dropped_unknown_call"], callList(gone))
}

// TestGWMalformed: raw bytes on a control connection through the gateway
// (bad cookie, Length 0, 11 and 65535, types 0 and 16) are counted as
// malformed, pass on, and leave the other clients' calls alone.
func TestGWMalformed(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 3)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	c2 := tp.clients[1].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(1), CallID: 1000})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	first := waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 1, 20*time.Second)
	before := waitCalls(l, gw, 2, nil, 5*time.Second)
	st := gw.MustStats()

	withLen := func(m []byte, n uint16) []byte { binary.BigEndian.PutUint16(m, n); return m }
	badCookie := sccrq()
	binary.BigEndian.PutUint32(badCookie[4:], 0xDEADBEEF)
	cases := []struct {
		name string
		msgs [][]byte
	}{
		{"bad cookie", [][]byte{badCookie}},
		{"length 0", [][]byte{withLen(sccrq(), 0)}},
		{"length 11", [][]byte{withLen(sccrq(), 11)}},
		{"length 65535", [][]byte{withLen(sccrq(), 65535)}},
		{"type 0", [][]byte{ctrlMsg(156, 0)}},
		{"type 16", [][]byte{ctrlMsg(156, 16)}},
		// After a good message: the tracker is in sync, then loses it.
		{"SCCRQ then type 16", [][]byte{sccrq(), ctrlMsg(16, 16)}},
	}
	for _, c := range cases {
		if err := rawControl(tp.clients[2], clientIP(2), serverIP, c.msgs...); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	l.MustWaitFor("malformed messages counted", func() error {
		s := gw.MustStats()
		if d := s["malformed"] - st["malformed"]; d < uint64(len(cases)) {
			return fmt.Errorf("malformed rose by %d, want >= %d", d, len(cases))
		}
		return nil
	}, 5*time.Second)
	waitRising(l, "echo replies still rising on both ends", ends, srv, first, 5*time.Second)
	after := waitCalls(l, gw, 2, nil, 5*time.Second)
	for i := range before {
		if before[i].ID != after[i].ID || after[i].PacketsIn <= before[i].PacketsIn || after[i].PacketsOut <= before[i].PacketsOut {
			t.Errorf("call changed or stalled: %s -> %s", before[i], after[i])
		}
	}
	if done, err := gw.Exited(); done {
		t.Fatalf("pptpgw exited: %v", err)
	}
	s := gw.MustStats()
	t.Logf("malformed %d -> %d, calls %s", st["malformed"], s["malformed"], callList(after))
}

// TestGWRestart: with the rules installed beforehand by `pptpgw rules
// install`, the daemon is stopped (SIGTERM: exit 0, state written) in the
// middle of live calls and started again: the rules stay in place across
// the gap (GRE waits in no queue and is dropped, not answered with ICMP),
// the calls come back from the state file, and LCP echoes resume on both
// ends of every call.
func TestGWRestart(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 2)
	l := tp.l
	tp.gw.MustPptpgw("rules", "install")
	gw := tp.gw.StartGateway(lab.GatewayConfig{Args: []string{"--gre-path", "queue"}}) // counts GRE the queues see
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	c2 := tp.clients[1].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(1), CallID: 1000})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 2, 20*time.Second)
	before := waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	rulesBefore := tp.gw.MustPptpgw("rules", "show")
	icmp := tp.gw.Capture("cap-icmp", "wan", "icmp")

	if err := gw.Stop(); err != nil {
		t.Fatalf("pptpgw on SIGTERM: %v, want exit 0", err)
	}
	if _, err := os.Stat(gw.StateFile); err != nil {
		t.Fatalf("no state file after SIGTERM: %v", err)
	}
	if got := tp.gw.MustPptpgw("rules", "show"); got != rulesBefore || strings.Contains(got, "differs") {
		t.Errorf("rules changed while the daemon was down:\n%s\nwant\n%s", got, rulesBefore)
	}
	// A gap of a few echo intervals: echoes are lost, the calls stay up.
	time.Sleep(2 * time.Second)
	gap, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	gw.Restart()
	if n, err := lab.CountPackets(icmp.Stop(), "icmp and src host "+publicIP); err != nil || n != 0 {
		t.Errorf("the gateway sent %d ICMP errors while the daemon was down (%v): GRE reached its stack", n, err)
	}
	restored, err := gw.Calls()
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != len(before) {
		t.Errorf("after restart: %d calls, want %d: %s", len(restored), len(before), callList(restored))
	}
	for i := range min(len(before), len(restored)) {
		b, r := before[i], restored[i]
		if b.ID != r.ID || b.InsideAddr != r.InsideAddr || b.InsideCallID != r.InsideCallID || b.PeerCallID != r.PeerCallID || r.State != "established" {
			t.Errorf("call not restored: %s -> %s", b, r)
		}
	}
	waitRising(l, "echo replies rising on both ends after the restart", ends, srv, gap, 10*time.Second)
	after := waitCalls(l, gw, 2, nil, 5*time.Second)
	for i := range min(len(restored), len(after)) {
		if after[i].PacketsIn <= restored[i].PacketsIn || after[i].PacketsOut <= restored[i].PacketsOut {
			t.Errorf("no GRE counted after the restart: %s -> %s", restored[i], after[i])
		}
	}
	if !logHas(gw, "state restored") {
		t.Errorf("the restarted daemon did not log \"state restored\"")
	}
	// The control streams carry on where the state file left them: a CDN
	// after the restart is parsed and ends its call.
	shutdownCall(t, srv, c2)
	callGone(l, gw, clientIP(1), 5*time.Second)
	if id := callFrom(t, before, clientIP(1)).ID; !logHas(gw, "call torn down", id, `"reason": "cdn"`) {
		t.Errorf("call %s was not torn down by its CDN after the restart", id)
	}
	if err := gw.Stop(); err != nil {
		t.Errorf("pptpgw on SIGTERM: %v, want exit 0", err)
	}
	if got := tp.gw.MustPptpgw("rules", "show"); got != rulesBefore {
		t.Errorf("persistent rules removed by the daemon's exit:\n%s", got)
	}
	t.Logf("before %s; after %s", callList(before), callList(after))
}

// iptablesSave returns `iptables-save` of ns without comments, counters and
// the tables that hold nothing (iptables-nft leaves a table behind, with
// its built-in chains, once anything has touched it).
func iptablesSave(t *testing.T, ns *lab.NS) string {
	t.Helper()
	out, err := ns.Run("iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	var res, table []string
	empty := true
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "*"):
			table, empty = []string{line}, true
			continue
		case line == "COMMIT":
			if !empty {
				res = append(res, append(table, line)...)
			}
			table = nil
			continue
		case strings.HasPrefix(line, ":"):
			// ":CHAIN POLICY [packets:bytes]": a user chain's policy is "-".
			f := strings.Fields(line)
			if len(f) >= 2 {
				line = f[0] + " " + f[1]
				if f[1] != "ACCEPT" {
					empty = false
				}
			}
		default:
			empty = false
		}
		table = append(table, line)
	}
	return strings.Join(res, "\n")
}

// oneLine checks a refusal: exit 1 and a single line on stderr containing
// every one of want.
func oneLine(t *testing.T, what, stdout, stderr string, code int, want ...string) {
	t.Helper()
	if code != 1 {
		t.Errorf("%s: exit %d, want 1; stderr:\n%s", what, code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Errorf("%s: %d lines on stderr, want one:\n%s", what, len(lines), stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: stderr does not name %q:\n%s", what, w, stderr)
		}
	}
	if stdout != "" {
		t.Errorf("%s: stdout %q, want nothing", what, stdout)
	}
}

// TestGWRules: `rules install` then `rules remove` leaves iptables as it
// was; so does `run --install-rules` then SIGTERM; `run` refuses to start
// without the rules, or with the rules of another --queue, in one line.
func TestGWRules(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	ns := l.AddNS("gw")
	ns.AddBridge("wan", publicIP+"/24") // no dummy interfaces in this kernel
	// The operator's own rules, in the tables pptpgw uses too.
	for _, r := range [][]string{
		{"-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"},
		{"-t", "mangle", "-A", "FORWARD", "-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"},
		{"-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "CT", "--notrack"},
		{"-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"},
	} {
		ns.MustRun(append([]string{"iptables"}, r...)...)
	}
	before := iptablesSave(t, ns)
	runArgs := []string{"run", "--admin-socket", l.Path("refused.sock"), "--state-file", l.Path("refused.json")}

	// Without the rules, run refuses and names what is missing.
	o, e, code := ns.Pptpgw(runArgs...)
	oneLine(t, "run without rules", o, e, code, "missing", "PPTPGW-")

	ns.MustPptpgw("rules", "install")
	installed := iptablesSave(t, ns)
	if installed == before {
		t.Fatalf("rules install changed nothing")
	}
	skip := "-m mark ! --mark 0x10000000/0x10000000"
	for _, want := range []string{"-A PREROUTING " + skip + " -j PPTPGW-NOTRACK", "-A PREROUTING " + skip + " -j PPTPGW-GRE-IN",
		"-A FORWARD -p tcp -j PPTPGW-CTL", "-A POSTROUTING " + skip + " -j PPTPGW-GRE-OUT", "--queue-num 0", "--queue-num 1",
		"-A OUTPUT ! -o lo -p tcp -j PPTPGW-CTL-OUT", "-A INPUT ! -i lo -p tcp -j PPTPGW-CTL-IN",
		"-A PPTPGW-CTL-OUT -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0"} {
		if !strings.Contains(installed, want) {
			t.Errorf("installed rules lack %q:\n%s", want, installed)
		}
	}
	ns.MustPptpgw("rules", "install") // idempotent
	if got := iptablesSave(t, ns); got != installed {
		t.Errorf("a second rules install changed iptables:\n%s\nwant\n%s", got, installed)
	}
	if show := ns.MustPptpgw("rules", "show"); !strings.Contains(show, "PPTPGW-GRE-IN") || strings.Contains(show, "differs") {
		t.Errorf("rules show:\n%s", show)
	}
	ns.MustPptpgw("rules", "remove")
	if got := iptablesSave(t, ns); got != before {
		t.Errorf("rules install + remove left iptables changed:\n%s\nwant\n%s", got, before)
	}
	ns.MustPptpgw("rules", "remove") // idempotent

	// run --install-rules installs what is missing and removes it at exit.
	gw := ns.StartGateway(lab.GatewayConfig{InstallRules: true})
	if got := iptablesSave(t, ns); got != installed {
		t.Errorf("run --install-rules installed:\n%s\nwant\n%s", got, installed)
	}
	if err := gw.Stop(); err != nil {
		t.Errorf("pptpgw on SIGTERM: %v, want exit 0", err)
	}
	if got := iptablesSave(t, ns); got != before {
		t.Errorf("run --install-rules + SIGTERM left iptables changed:\n%s\nwant\n%s", got, before)
	}

	// The rules of another queue: run refuses and names the difference.
	ns.MustPptpgw("rules", "install", "--queue", "5")
	o, e, code = ns.Pptpgw(runArgs...)
	oneLine(t, "run with the rules of --queue 5", o, e, code, "--queue-num 5")
	// ... and so does rules install, which only adds.
	_, e, code = ns.Pptpgw("rules", "install")
	if code != 1 || !strings.Contains(e, "--queue-num 5") {
		t.Errorf("rules install over --queue 5 rules: exit %d: %s", code, e)
	}
	ns.MustPptpgw("rules", "remove")
	if got := iptablesSave(t, ns); got != before {
		t.Errorf("rules remove after --queue 5 left iptables changed:\n%s\nwant\n%s", got, before)
	}
	if _, err := os.Stat(l.Path("refused.sock")); err == nil {
		t.Errorf("a refused run left its admin socket behind")
	}
}

// TestGWKernelHelper: `run` refuses to start, naming the rule, while the
// kernel's own PPTP helper is attached, unless --force.
func TestGWKernelHelper(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	ns := l.AddNS("gw")
	helper := []string{"-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp"}
	ns.MustRun(append([]string{"iptables"}, helper...)...)
	before := iptablesSave(t, ns)
	o, e, code := ns.Pptpgw("run", "--install-rules", "--admin-socket", l.Path("refused.sock"), "--state-file", l.Path("refused.json"))
	oneLine(t, "run with the kernel helper attached", o, e, code, "-p tcp -m tcp --dport 1723 -j CT --helper pptp", "--force")
	if got := iptablesSave(t, ns); got != before {
		t.Errorf("a refused run changed iptables:\n%s\nwant\n%s", got, before)
	}
	gw := ns.StartGateway(lab.GatewayConfig{InstallRules: true, Args: []string{"--force"}})
	if err := gw.Stop(); err != nil {
		t.Errorf("pptpgw --force on SIGTERM: %v, want exit 0", err)
	}
	if got := iptablesSave(t, ns); got != before {
		t.Errorf("run --install-rules --force + SIGTERM left iptables changed:\n%s\nwant\n%s", got, before)
	}
}
