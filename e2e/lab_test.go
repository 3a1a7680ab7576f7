//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
	"github.com/pptpgw/pptpgw/e2e/ppp"
)

func TestMain(m *testing.M) { os.Exit(lab.RunMain(m)) }

const serverIP = lab.ServerIP

// topo is the lab's basic shape (lab.Basic) with the kernel's helper on
// the gateway.
type topo struct {
	l       *lab.Lab
	gw, srv *lab.NS
	clients []*lab.NS
}

var clientIP = lab.ClientIP

func newTopo(t *testing.T, nClients int) *topo {
	l := lab.New(t)
	b := l.Basic(nClients)
	return &topo{l: l, gw: b.GW, srv: b.Srv, clients: b.Clients}
}

// TestLabKernelHelper proves the lab with the kernel's own PPTP helper on
// the gateway: two pptp-linux clients and one pptpcli, all behind one
// MASQUERADE address, negotiate LCP with pptpd's pppeers and keep echoing,
// so PPP crosses the gateway both ways for every call.
func TestLabKernelHelper(t *testing.T) {
	tp := newTopo(t, 3)
	l := tp.l
	tp.gw.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})

	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	c2 := tp.clients[1].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(1)})
	cli := tp.clients[2].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(2)})
	ends := []end{{"pptp1", c1.Status}, {"pptp2", c2.Status}, {"pptpcli", cli.Status}}

	// Both ends of a call: the client's pppeer and, found by its magic
	// number, the server-side pppeer pptpd started for it (pairsOf).
	pairs := func() (map[string][2]ppp.Status, error) {
		ps, err := pairsOf(ends, srv)
		out := map[string][2]ppp.Status{}
		for name, p := range ps {
			out[name] = [2]ppp.Status{p.client, p.server}
		}
		return out, err
	}
	var first map[string][2]ppp.Status
	l.MustWaitFor("LCP opened and echoes answered on both ends of 3 calls", func() error {
		p, err := pairs()
		if err != nil {
			return err
		}
		for name, cs := range p {
			for i, side := range []string{"client", "server"} {
				if err := lab.CheckEcho(cs[i], 2); err != nil {
					return fmt.Errorf("%s %s side: %w", name, side, err)
				}
			}
		}
		first = p
		return nil
	}, 20*time.Second)

	// Still flowing: every counter of both ends keeps rising.
	l.MustWaitFor("echo replies rising on both ends", func() error {
		p, err := pairs()
		if err != nil {
			return err
		}
		for name, cs := range p {
			for i, side := range []string{"client", "server"} {
				if cs[i].EchoRepRecv <= first[name][i].EchoRepRecv || cs[i].EchoRepSent <= first[name][i].EchoRepSent {
					return fmt.Errorf("%s %s side: echo_rep_recv %d, echo_rep_sent %d, not rising",
						name, side, cs[i].EchoRepRecv, cs[i].EchoRepSent)
				}
			}
		}
		return nil
	}, 5*time.Second)

	st, err := cli.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Calls) != 1 || st.Calls[0].State != "established" || st.Control != "established" {
		t.Errorf("pptpcli: control %q, calls %+v", st.Control, st.Calls)
	}
	for name, cs := range first {
		t.Logf("%s: client magic %08x echo_rep_recv %d / server pid %d echo_rep_recv %d",
			name, cs[0].Magic, cs[0].EchoRepRecv, cs[1].PID, cs[1].EchoRepRecv)
	}
}

// TestLabNoHelperDropsInboundGRE shows the problem pptpgw solves: with
// MASQUERADE and no PPTP helper the control connection works, but GRE from
// the server to the public address never reaches the inside client.
func TestLabNoHelperDropsInboundGRE(t *testing.T) {
	tp := newTopo(t, 1)
	l := tp.l
	tp.srv.StartPPTPD(lab.PPTPDConfig{})
	wan := tp.gw.Capture("cap-wan", "wan", "ip proto 47 or icmp")
	lan := tp.clients[0].Capture("cap-c1", "eth0", "ip proto 47")
	// Not Call ID 0: pptpd's first call is 0 too, and with both IDs 0 the
	// kernel's GRE tracker matches the reply even without a helper.
	cli := tp.clients[0].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(0), CallID: 1000})

	l.MustWaitFor("call set up over the control connection", func() error {
		s, err := cli.Status()
		if err != nil {
			return err
		}
		if len(s.Calls) == 0 || s.Calls[0].State == "requested" {
			return fmt.Errorf("no OCRP yet: %+v", s.Calls)
		}
		if s.Calls[0].State == "failed" {
			return fmt.Errorf("OCRP refused the call: %+v", s.Calls[0])
		}
		return nil
	}, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // time for LCP to try, and fail
	wanPcap, lanPcap := wan.Stop(), lan.Stop()

	count := func(path, filter string) int {
		n, err := lab.CountPackets(path, filter)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	fromServerAtGW := count(wanPcap, "ip proto 47 and src host "+serverIP)
	fromServerAtClient := count(lanPcap, "ip proto 47 and src host "+serverIP)
	fromClient := count(lanPcap, "ip proto 47 and src host "+clientIP(0))
	icmp := count(wanPcap, "icmp")
	t.Logf("GRE client->server %d, server->gateway %d, delivered to client %d; ICMP at gateway %d",
		fromClient, fromServerAtGW, fromServerAtClient, icmp)
	// pptpd's pppeer speaks first, and the ICMP error it gets back makes
	// pptpd drop the call at once: the client may never get to send GRE.
	if fromServerAtGW == 0 {
		t.Fatalf("no GRE from the server at the gateway: the lab, not the gateway, is broken")
	}
	if fromServerAtClient != 0 {
		t.Errorf("%d GRE packets from the server reached the client without a helper", fromServerAtClient)
	}
	s, err := cli.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.LCPOpened || s.FramesIn != 0 {
		t.Errorf("client received PPP without a helper: %+v", s.Counters)
	}
}
