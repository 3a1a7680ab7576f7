//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
	"github.com/pptpgw/pptpgw/nat/ha/etcdtest"
)

// A gateway pair (issue 13): two pptpgw nodes sharing an inside and an
// outside bridge, real keepalived moving the inside gateway address and
// the public address, real conntrackd between them over a management
// link, one real etcd member, real pptpd and pptp-linux. The nodes run
// deploy/ha's files (the lab uses its interface names and addresses).
//
//	c1..c4 192.168.1.1x ── [lan br] ── lan0 gw-a 192.168.1.2 / gw-b 192.168.1.3 (VIP .1)
//	srv 203.0.113.10 [wan br] ── wan0 gw-a 203.0.113.2 / gw-b 203.0.113.3 (VIP .1)
//	etcd 10.77.0.3 [ha br] ── ha0 gw-a 10.77.0.1 / gw-b 10.77.0.2

const (
	haLANVIP   = "192.168.1.1"
	haPublic   = "203.0.113.1"
	haServer   = "203.0.113.10"
	haEtcdURL  = "http://10.77.0.3:2379"
	haEtcdPeer = "http://10.77.0.3:2380"
)

func haDeploy(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "deploy", "ha", name))
	return p
}

// haNode is one gateway of the pair.
type haNode struct {
	name       string // gw-a, gw-b
	ns         *lab.NS
	gw         *lab.Gateway
	ka, ctd    *lab.Proc
	kaConf     string
	ctdConf    string
	runs       int
	lan, wan   string // its own addresses
	mgmt, peer string // ha0: its own and the other node's
}

type haTopo struct {
	l            *lab.Lab
	lan, srv, et *lab.NS
	a, b         *haNode
	clients      []*lab.NS
	etcd         *lab.Proc
	etcdRuns     int
	etcdDir      string
	grePath      string // --gre-path of both nodes
}

func newHATopo(t *testing.T, nClients int, grePath string) *haTopo {
	for _, tool := range []string{"keepalived", "conntrackd", etcdtest.Binary, "etcdctl"} {
		if _, err := lookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install -y keepalived conntrackd etcd-server etcd-client): %v", tool, err)
		}
	}
	l := lab.New(t)
	h := &haTopo{l: l, grePath: grePath, lan: l.AddNS("ha-lan"), srv: l.AddNS("ha-srv"), et: l.AddNS("ha-etcd")}
	h.lan.AddBridge("br0", "")
	h.srv.AddBridge("br0", haServer+"/24")
	h.et.AddBridge("br0", "10.77.0.3/24")
	h.a = &haNode{name: "gw-a", ns: l.AddNS("ha-gwa"), lan: "192.168.1.2", wan: "203.0.113.2", mgmt: "10.77.0.1", peer: "10.77.0.2"}
	h.b = &haNode{name: "gw-b", ns: l.AddNS("ha-gwb"), lan: "192.168.1.3", wan: "203.0.113.3", mgmt: "10.77.0.2", peer: "10.77.0.1"}
	for _, n := range []*haNode{h.a, h.b} {
		s := n.name[len(n.name)-1:]
		l.LinkToBridge(n.ns, "lan0", n.lan+"/24", h.lan, "br0", "lan-"+s)
		l.LinkToBridge(n.ns, "wan0", n.wan+"/24", h.srv, "br0", "wan-"+s)
		l.LinkToBridge(n.ns, "ha0", n.mgmt+"/24", h.et, "br0", "ha-"+s)
		n.ns.EnableForwarding()
		n.ns.MustRun("iptables-restore", "--noflush", haDeploy("rules.v4"))
		h.writeConfs(n)
	}
	for i := range nClients {
		c := l.AddNS(fmt.Sprintf("ha-c%d", i+1))
		l.LinkToBridge(c, "eth0", clientIP(i)+"/24", h.lan, "br0", fmt.Sprintf("c%d", i+1))
		c.DefaultRoute(haLANVIP)
		h.clients = append(h.clients, c)
	}
	h.etcdDir = l.Path("etcd-data")
	h.startEtcd()
	return h
}

// writeConfs derives the node's keepalived and conntrackd files from
// deploy/ha: only paths (and, for gw-b, conntrackd's link addresses) change.
func (h *haTopo) writeConfs(n *haNode) {
	l := h.l
	notify := l.Path("notify-" + n.name + ".sh")
	n.ctdConf = l.Path("conntrackd-" + n.name + ".conf")
	n.kaConf = l.Path("keepalived-" + n.name + ".conf")
	write(h.l.T, notify, fmt.Sprintf("#!/bin/sh\nCONNTRACKD_CONF=%s exec sh %s \"$@\" >>%s 2>&1\n",
		n.ctdConf, haDeploy("notify.sh"), l.Path("notify-"+n.name+".log")), 0o700)
	ka := readDeploy(h.l.T, "keepalived.conf")
	ka = strings.ReplaceAll(ka, "/etc/pptpgw/ha/notify.sh", notify)
	write(h.l.T, n.kaConf, ka, 0o600)
	ctd := readDeploy(h.l.T, "conntrackd.conf")
	ctd = strings.NewReplacer(
		"IPv4_address 10.77.0.1\n", "IPv4_address "+n.mgmt+"\n",
		"IPv4_Destination_Address 10.77.0.2", "IPv4_Destination_Address "+n.peer,
		"LogFile on", "LogFile "+l.Path("conntrackd-"+n.name+".log"),
		"/var/lock/conntrackd.lock", l.Path("conntrackd-"+n.name+".lock"),
		"/var/run/conntrackd.ctl", l.Path("conntrackd-"+n.name+".ctl"),
	).Replace(ctd)
	write(h.l.T, n.ctdConf, ctd, 0o600)
}

func readDeploy(t testing.TB, name string) string {
	b, err := os.ReadFile(haDeploy(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t testing.TB, path, s string, mode os.FileMode) {
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

func (h *haTopo) startEtcd() {
	h.etcdRuns++
	h.etcd = h.et.Start(fmt.Sprintf("etcd-%d", h.etcdRuns), append([]string{etcdtest.Binary},
		etcdtest.Args("e2e", h.etcdDir, haEtcdURL, haEtcdPeer)...)...)
	h.l.MustWaitFor("etcd healthy", func() error {
		_, err := h.et.Run("etcdctl", "--endpoints", haEtcdURL, "endpoint", "health")
		return err
	}, 20*time.Second)
}

// start runs the node's conntrackd, keepalived and pptpgw.
func (h *haTopo) start(n *haNode) {
	n.runs++
	sfx := fmt.Sprintf("%s-%d", n.name, n.runs)
	os.Remove(h.l.Path("conntrackd-" + n.name + ".lock"))
	n.ctd = n.ns.Start("conntrackd-"+sfx, "conntrackd", "-C", n.ctdConf)
	n.ka = n.ns.Start("keepalived-"+sfx, "keepalived", "--dont-fork", "--log-console", "--no-syslog", "--log-detail",
		"--vrrp", "-f", n.kaConf, "-i", n.name,
		"-p", h.l.Path("keepalived-"+sfx+".pid"), "-r", h.l.Path("keepalived-vrrp-"+sfx+".pid"))
	h.startGateway(n)
}

// startGateway runs the node's pptpgw (again).
func (h *haTopo) startGateway(n *haNode, args ...string) {
	if n.gw == nil {
		n.gw = n.ns.StartGateway(lab.GatewayConfig{Name: "pptpgw-" + n.name, InstallRules: true, LogLevel: "info",
			Args: append([]string{"--gre-path", h.grePath, "--ha-etcd", haEtcdURL, "--ha-node", n.name}, args...)})
	} else {
		n.gw.Restart()
	}
}

// kill ends the node hard: SIGKILL to everything in its namespace, links down.
func (h *haTopo) kill(n *haNode) {
	for _, pid := range n.ns.Pids() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, p := range []*lab.Proc{n.gw.Proc, n.ka, n.ctd} {
		p.Wait(5 * time.Second)
	}
	for _, ifc := range []string{"lan0", "wan0", "ha0"} {
		n.ns.IP("link", "set", ifc, "down")
	}
}

func (h *haTopo) up(n *haNode) {
	for _, ifc := range []string{"lan0", "wan0", "ha0"} {
		n.ns.IP("link", "set", ifc, "up")
	}
}

// owns reports whether n holds both VIPs.
func (n *haNode) owns() error {
	out, err := n.ns.Run("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return err
	}
	if !strings.Contains(out, " "+haLANVIP+"/24") || !strings.Contains(out, " "+haPublic+"/24") {
		return fmt.Errorf("%s does not hold both VIPs", n.name)
	}
	return nil
}

func lookPath(tool string) (string, error) {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if p := filepath.Join(d, tool); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not in /usr/sbin, /usr/bin", tool)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// sameIDs checks that calls list exactly the outer IDs in want (by inside address).
func sameIDs(calls []lab.GWCall, want map[string]uint16) error {
	if len(calls) != len(want) {
		return fmt.Errorf("%d calls, want %d", len(calls), len(want))
	}
	for _, c := range calls {
		if id, ok := want[c.InsideAddr]; !ok || id != c.OuterCallID {
			return fmt.Errorf("call %s: outer %d, want %d", c, c.OuterCallID, id)
		}
	}
	return nil
}

func outerByInside(calls []lab.GWCall) map[string]uint16 {
	m := map[string]uint16{}
	for _, c := range calls {
		m[c.InsideAddr] = c.OuterCallID
	}
	return m
}

// lost is, per client, echo requests sent and not answered.
func lost(ends []end) (map[string]int64, error) {
	m := map[string]int64{}
	for _, e := range ends {
		s, err := e.status()
		if err != nil {
			return nil, err
		}
		m[e.name] = int64(s.EchoReqSent) - int64(s.EchoRepRecv)
	}
	return m, nil
}

// TestHAFailover: issue 13's proof, in order, with GRE through the
// queues and through the kernel's fast paths (--gre-path auto: tc eBPF
// and nf_tables maps), which hold every node's calls too.
func TestHAFailover(t *testing.T) {
	for _, path := range []string{"queue", "auto"} {
		t.Run(path, func(t *testing.T) { testHAFailover(t, path) })
	}
}

func testHAFailover(t *testing.T, grePath string) {
	h := newHATopo(t, 4, grePath)
	l := h.l
	h.start(h.a)
	l.MustWaitFor("gw-a holds both VIPs", h.a.owns, 15*time.Second)
	h.start(h.b)
	srv := h.srv.StartPPTPD(lab.PPTPDConfig{EchoInterval: 250 * time.Millisecond})
	const echo = 250 * time.Millisecond
	var ends []end
	startClient := func(i int) {
		pc := h.clients[i].StartPPTPClient(lab.PPTPClientConfig{Server: haServer, LocalBind: clientIP(i), EchoInterval: echo})
		ends = append(ends, end{fmt.Sprintf("pptp%d", i+1), pc.Status})
	}

	// (1) Two calls through gw-a; gw-b lists them with the same outer IDs.
	startClient(0)
	startClient(1)
	waitEchoes(l, "two calls through gw-a", ends, srv, 2, 30*time.Second)
	callsA := waitCalls(l, h.a.gw, 2, trafficBothWays, 5*time.Second)
	ids := outerByInside(callsA)
	start := time.Now()
	waitCalls(l, h.b.gw, 2, func(cs []lab.GWCall) error {
		for _, c := range cs {
			if c.Node != "gw-a" {
				return fmt.Errorf("call %s: node %q, want gw-a", c, c.Node)
			}
		}
		return sameIDs(cs, ids)
	}, 5*time.Second)
	t.Logf("(1) gw-b lists gw-a's calls %v within %v", ids, time.Since(start).Round(time.Millisecond))

	// (2) gw-a dies hard; gw-b owns both addresses within 10 s and the
	// same calls' echoes resume.
	before, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	h.kill(h.a)
	l.MustWaitFor("gw-b holds both VIPs", h.b.owns, 10*time.Second)
	owned := time.Since(killed)
	var firstEcho time.Duration
	l.MustWaitFor("echoes through gw-b", func() error {
		p, err := pairsOf(ends, srv)
		if err != nil {
			return err
		}
		for name, cp := range p {
			if cp.client.EchoRepRecv <= before[name].client.EchoRepRecv+2 {
				return fmt.Errorf("%s: echo replies %d -> %d", name, before[name].client.EchoRepRecv, cp.client.EchoRepRecv)
			}
			if cp.client.Magic != before[name].client.Magic {
				return fmt.Errorf("%s: a new PPP session (magic changed)", name)
			}
		}
		firstEcho = time.Since(killed)
		return nil
	}, 10*time.Second)
	waitCalls(l, h.b.gw, 2, func(cs []lab.GWCall) error { return sameIDs(cs, ids) }, 5*time.Second)
	t.Logf("(2) kill -> gw-b owns both VIPs: %v; -> echoes of both calls through gw-b: %v",
		owned.Round(time.Millisecond), firstEcho.Round(time.Millisecond))

	// (3) A third client's call through gw-b: an outer ID of its own.
	startClient(2)
	waitEchoes(l, "three calls through gw-b", ends, srv, 2, 30*time.Second)
	callsB := waitCalls(l, h.b.gw, 3, distinctOuter, 10*time.Second)
	t.Logf("(3) gw-b: %s", callList(callsB))

	// (4) gw-a comes back as standby and learns every call.
	h.up(h.a)
	h.start(h.a)
	// gw-b carries every call: gw-a's records of its previous life do not
	// win over them; every call is gw-b's on both nodes.
	allB := func(cs []lab.GWCall) error {
		for _, c := range cs {
			if c.Node != "gw-b" {
				return fmt.Errorf("call %s: node %q, want gw-b", c, c.Node)
			}
		}
		return sameIDs(cs, outerByInside(callsB))
	}
	waitCalls(l, h.a.gw, 3, allB, 15*time.Second)
	waitCalls(l, h.b.gw, 3, allB, 5*time.Second)
	if err := h.b.owns(); err != nil {
		t.Errorf("(4) after gw-a's return: %v", err)
	}
	mid, _ := pairsOf(ends, srv)
	waitRising(l, "(4) echoes still rising with gw-a back", ends, srv, mid, 10*time.Second)

	// (5) etcd stopped during live calls: nothing lost, a call set up
	// meanwhile reaches gw-a when etcd is back.
	lost0, err := lost(ends)
	if err != nil {
		t.Fatal(err)
	}
	h.etcd.Signal(syscall.SIGKILL)
	h.etcd.Wait(5 * time.Second)
	startClient(3)
	waitEchoes(l, "a fourth call through gw-b, etcd gone", ends, srv, 2, 30*time.Second)
	waitCalls(l, h.b.gw, 4, distinctOuter, 10*time.Second)
	if st := h.b.gw.MustStats(); st["ha_connected"] != 0 || st["ha_pending"] == 0 {
		t.Errorf("(5) gw-b with etcd gone: ha_connected %d ha_pending %d", st["ha_connected"], st["ha_pending"])
	}
	mid, _ = pairsOf(ends, srv)
	waitRising(l, "(5) echoes rising with etcd gone", ends, srv, mid, 10*time.Second)
	h.startEtcd()
	back := time.Now()
	all := waitCalls(l, h.b.gw, 4, nil, 5*time.Second)
	waitCalls(l, h.a.gw, 4, func(cs []lab.GWCall) error { return sameIDs(cs, outerByInside(all)) }, 20*time.Second)
	t.Logf("(5) etcd back: gw-a learns the call set up meanwhile in %v", time.Since(back).Round(time.Millisecond))
	lost1, err := lost(ends)
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range lost0 {
		if lost1[name] > n+1 { // one echo in flight
			t.Errorf("(5) %s: unanswered echoes %d -> %d during the etcd outage", name, n, lost1[name])
		}
	}

	// (6) The kernel's helper is never involved.
	noKernelHelper(t, h.b.ns)
	out, _ := h.a.ns.Run("conntrack", "-L")
	if strings.Contains(out, "helper=pptp") {
		t.Errorf("the kernel's PPTP helper is attached on gw-a:\n%s", out)
	}
	haBytes(t, h, len(all))
	t.Logf("gw-b stats: %v", h.b.gw.MustStats())
}

// haBytes logs what the calls take in etcd.
func haBytes(t *testing.T, h *haTopo, calls int) {
	out, err := h.et.Run("etcdctl", "--endpoints", haEtcdURL, "get", "--prefix", "/pptpgw/conns/")
	if err != nil {
		t.Errorf("etcdctl get: %v", err)
		return
	}
	t.Logf("etcd holds %d bytes (keys and values) for %d calls: %d per call", len(out), calls, len(out)/max(calls, 1))
}

// TestHAScale measures the replication with many calls
// (PPTPGW_E2E_HA_CALLS, default 10 000) set up by the lab's load client
// through gw-a against pacsim: how soon gw-b holds them all (calls/s the
// replication sustains), and the bytes per call in etcd. The VIPs are
// put on gw-a by hand: no failover here.
func TestHAScale(t *testing.T) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("PPTPGW_E2E_HA_CALLS")); err == nil && v > 0 {
		n = v
	}
	h := newHATopo(t, 1, "auto")
	l := h.l
	h.a.ns.AddAddr("lan0", haLANVIP+"/24")
	h.a.ns.AddAddr("wan0", haPublic+"/24")
	limits := []string{"--max-calls", strconv.Itoa(2 * n), "--max-calls-per-inside", strconv.Itoa(2 * n)}
	h.startGateway(h.a, limits...)
	h.startGateway(h.b, limits...)
	h.srv.Start("pacsim", lab.Build(t, lab.Module+"/e2e/cmd/pacsim"), "--listen", haServer,
		"--call-id", "1", "--status", l.Path("pacsim.json"))
	l.MustWaitFor("pacsim listening", func() error {
		var st struct{ Listening bool }
		if err := readJSON(l.Path("pacsim.json"), &st); err != nil || !st.Listening {
			return fmt.Errorf("not yet: %v", err)
		}
		return nil
	}, 10*time.Second)
	status := l.Path("load.json")
	start := time.Now()
	p := h.clients[0].Start("pptpload", lab.Build(t, lab.Module+"/e2e/cmd/pptpload"),
		"--server", haServer, "--calls", strconv.Itoa(n), "--call-id", "1000",
		"--concurrency", strconv.Itoa(scaleConcurrency()), "--status", status)
	var r loadReport
	var onB time.Duration
	l.MustWaitFor(fmt.Sprintf("%d calls through gw-a, all on gw-b", n), func() error {
		if done, err := p.Exited(); done {
			return fmt.Errorf("pptpload exited: %v", err)
		}
		if onB == 0 {
			if st, err := h.b.gw.Stats(); err == nil && st["calls_active"] == uint64(n) {
				onB = time.Since(start)
			}
		}
		if err := readJSON(status, &r); err != nil || r.State != "holding" || onB == 0 {
			return fmt.Errorf("not yet: load %+v, gw-b after %v (%v)", r, onB, err)
		}
		return nil
	}, 120*time.Second+time.Duration(n)*10*time.Millisecond)
	if r.Calls != n || r.Failed != 0 {
		t.Fatalf("pptpload set up %d of %d calls, %d failed: %s", r.Calls, n, r.Failed, r.Error)
	}
	stA, stB := h.a.gw.MustStats(), h.b.gw.MustStats()
	if stB["ha_errors"] != 0 || stA["ha_overflows"] != 0 {
		t.Errorf("replication errors: gw-a %d overflows, gw-b %d errors", stA["ha_overflows"], stB["ha_errors"])
	}
	t.Logf("%d calls: set up through gw-a at %.0f calls/s (pptpload); all on gw-b %v after the load started: %.0f calls/s replicated",
		n, r.Rate, onB.Round(time.Millisecond), float64(n)/onB.Seconds())
	haBytes(t, h, n)
}
