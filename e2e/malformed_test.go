//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/e2e/lab"
)

// The hardening barrage: every kind of bad control message and bad GRE v1
// header, sent in the middle of two live calls, by an inside host and by
// an outside one, in both gateway roles (PNS inside behind MASQUERADE, PAC
// inside behind a port-forward). Each is counted by its reason, the daemon
// stays up, and the live calls' LCP echoes carry on.

// ctrlCase is the bytes one control connection carries before its FIN.
type ctrlCase struct {
	name string
	data []byte
}

// malformedCtrlCases are the bad control streams; each makes exactly one
// framing error (stats "malformed").
func malformedCtrlCases() []ctrlCase {
	var cs []ctrlCase
	full := func(typ int) []byte {
		m := ctrlMsg(alg.RFCLength(alg.MsgType(typ)), uint16(typ))
		if typ == pptpmsg.SCCRQ {
			m = sccrq()
		}
		return m
	}
	// Every type cut short, then FIN: the message never completes.
	for typ := 1; typ <= 15; typ++ {
		m := full(typ)
		seen := map[int]bool{}
		for _, cut := range []int{1, 11, 12, len(m) / 2, len(m) - 1} {
			if seen[cut] {
				continue
			}
			seen[cut] = true
			cs = append(cs, ctrlCase{fmt.Sprintf("type %d cut at %d/%d", typ, cut, len(m)), m[:cut]})
		}
	}
	withLen := func(m []byte, n int) []byte { binary.BigEndian.PutUint16(m, uint16(n)); return m }
	badCookie := sccrq()
	binary.BigEndian.PutUint32(badCookie[4:], 0xDEADBEEF)
	mgmt := sccrq()
	binary.BigEndian.PutUint16(mgmt[2:], 2) // PPTP Message Type 2: management
	garbage := make([]byte, 64)
	for i := range garbage {
		garbage[i] = 0xAA
	}
	cs = append(cs,
		ctrlCase{"oversized length (SCCRQ 157)", append(withLen(sccrq(), 157), 0)},
		ctrlCase{"oversized length (echo request 400)", append(withLen(ctrlMsg(16, 5), 400), make([]byte, 384)...)},
		ctrlCase{"bad cookie", badCookie},
		ctrlCase{"management message", mgmt},
		ctrlCase{"type 0", ctrlMsg(156, 0)},
		ctrlCase{"type 16", ctrlMsg(156, 16)},
		ctrlCase{"type 255", ctrlMsg(156, 255)},
		ctrlCase{"type 65535", ctrlMsg(156, 65535)},
		ctrlCase{"length 0", withLen(sccrq(), 0)},
		ctrlCase{"length 1", withLen(sccrq(), 1)},
		ctrlCase{"length 11", withLen(sccrq(), 11)},
		ctrlCase{"length 65535", withLen(sccrq(), 65535)},
		ctrlCase{"garbage after a valid SCCRQ", append(sccrq(), garbage...)},
	)
	return cs
}

// rawControlFIN connects from ns (address local) to server:1723, writes
// data, half-closes (FIN) and waits up to 3 s for the server to close. A
// message cut short counts as malformed whether the FIN or the server's
// RST ends it.
func rawControlFIN(ns *lab.NS, local, server string, data []byte) error {
	// pptpd accepts slowly (a fork per connection): on a loaded machine a
	// SYN may wait for a couple of retransmissions.
	c, err := dialControl(ns, local, server, 15*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// The server may have reset the connection already (pptpd closes on a
	// first message it does not like, its bytes unread): then no FIN.
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	io.Copy(io.Discard, c)
	return nil
}

// sendCtrlCases runs every case on a connection of its own, a few at a time.
func sendCtrlCases(t *testing.T, ns *lab.NS, local, server string, cases []ctrlCase) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make(chan error, len(cases))
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := rawControlFIN(ns, local, server, c.data); err != nil {
				errs <- fmt.Errorf("%s: %w", c.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// greCase is one crafted GRE packet (the IP payload), whether the
// gateway's rules queue it when it is forwarded (the u32 match only takes
// version 1 with protocol 0x880B in the first 4 bytes, DESIGN.md, so other
// versions and protocols, and headers shorter than 4 bytes, stay with the
// kernel and are never counted by pptpgw), and the reason pptpgw counts it
// under when it is sent to the public address (where every GRE is queued).
type greCase struct {
	name   string
	b      []byte
	queued bool
	reason string
}

// malformedGRECases builds the bad GRE v1 headers around a valid one for
// callID (K, S and A set: a 16-byte header).
func malformedGRECases(callID uint16) []greCase {
	valid := func() []byte {
		b := greV1(callID, 1)
		b[1] |= 0x80 // A: an acknowledgment number follows the sequence number
		return append(b[:12:12], append([]byte{0, 0, 0, 1}, b[12:]...)...)
	}
	var cs []greCase
	flag := func(name string, f func(b []byte)) {
		b := valid()
		f(b)
		cs = append(cs, greCase{name, b, true, "malformed_gre"})
	}
	flag("C", func(b []byte) { b[0] |= 0x80 })
	flag("R", func(b []byte) { b[0] |= 0x40 })
	flag("s", func(b []byte) { b[0] |= 0x08 })
	for r := byte(1); r <= 7; r++ {
		flag(fmt.Sprintf("recur %d", r), func(b []byte) { b[0] |= r })
	}
	for _, bit := range []byte{0x08, 0x10, 0x20, 0x40} {
		flag(fmt.Sprintf("flags bit 0x%02x", bit), func(b []byte) { b[1] |= bit })
	}
	flag("K missing", func(b []byte) { b[0] &^= 0x20 })
	flag("C R s recur 7, K missing", func(b []byte) { b[0] = 0xDF &^ 0x20 })
	for n := 0; n < 16; n++ {
		cs = append(cs, greCase{fmt.Sprintf("header cut at %d", n), valid()[:n], n >= 4, "malformed_gre"})
	}
	for _, v := range []byte{0, 2, 3, 4, 5, 6, 7} {
		b := valid()
		b[1] = b[1]&^0x07 | v
		reason := "gre_version" // to a local address: dropped
		if v == 0 {
			reason = "not_pptp_gre" // accepted, for ip_gre; the router's answer is dropped
		}
		cs = append(cs, greCase{fmt.Sprintf("version %d", v), b, false, reason})
	}
	for _, p := range []uint16{0x0800, 0x0000, 0x880A, 0x6558} {
		b := valid()
		binary.BigEndian.PutUint16(b[2:], p)
		cs = append(cs, greCase{fmt.Sprintf("protocol 0x%04x", p), b, false, "gre_protocol"})
	}
	return cs
}

// sendGREPayloads sends each payload reps times from ns (address src) to
// dst through a raw GRE socket.
func sendGREPayloads(ns *lab.NS, src, dst string, cases []greCase, reps int) error {
	c, err := greSocket(ns, src)
	if err != nil {
		return err
	}
	defer c.Close()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	for range reps {
		for _, k := range cases {
			if _, err := c.WriteToIP(k.b, to); err != nil {
				return fmt.Errorf("send GRE %s: %w", k.name, err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// barrage is one side's view of the malformed-input run.
type barrage struct {
	l        *lab.Lab
	gw       *lab.Gateway
	gwNS     *lab.NS
	wan      string // the gateway's outside interface
	srv      *lab.PPTPD
	ends     []end
	calls    []lab.GWCall
	ctrlFrom *lab.NS // the host sending bad control messages
	ctrlSrc  string  // its address
	ctrlDst  string  // where it sends them (the server, or the public address)
	// GRE: inbound from the outside end of a live call to the public
	// address, for its outer Call ID; outbound from the inside end of a
	// live call to its peer, for the peer's Call ID.
	inNS, outNS *lab.NS
	// peerNS holds each call's peer address (by address): forged ICMP
	// errors about a call come from its own peer too.
	peerNS map[string]*lab.NS
	// A third outside address, which sends the same GRE and ICMP: every
	// GRE to the public address is classified by pptpgw, and the router
	// answers none of it towards the outside (silence, issue 12).
	strayNS  *lab.NS
	straySrc string
}

const greReps = 3

func (b *barrage) run(t *testing.T) {
	l, gw := b.l, b.gw
	first := waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", b.ends, b.srv, 1, 20*time.Second)
	st := gw.MustStats()
	icmpOut := b.gwNS.Capture("cap-icmp-out", b.wan, "icmp and src host "+publicIP)

	ctrl := malformedCtrlCases()
	sendCtrlCases(t, b.ctrlFrom, b.ctrlSrc, b.ctrlDst, ctrl)

	call := b.calls[0]
	inCases := malformedGRECases(call.OuterCallID)
	outCases := malformedGRECases(call.PeerCallID)
	// Every kind, from the call's own peer and from a third address.
	if err := sendGREPayloads(b.inNS, call.PeerAddr, call.PublicAddr, inCases, greReps); err != nil {
		t.Fatal(err)
	}
	if err := sendGREPayloads(b.strayNS, b.straySrc, call.PublicAddr, inCases, greReps); err != nil {
		t.Fatal(err)
	}
	if err := sendGREPayloads(b.outNS, call.InsideAddr, call.PeerAddr, outCases, greReps); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"malformed": uint64(len(ctrl))}
	for _, k := range inCases {
		want["packets_"+k.reason] += 2 * greReps
	}
	for _, k := range outCases {
		if k.queued {
			want["packets_malformed_gre"] += greReps
		}
	}
	// Forged ICMP errors about both calls' GRE, from each call's peer and
	// from the third address.
	for _, c := range b.calls {
		for _, from := range []struct {
			ns  *lab.NS
			src string
		}{{b.peerNS[c.PeerAddr], c.PeerAddr}, {b.strayNS, b.straySrc}} {
			if err := sendForgedICMP(from.ns, from.src, c, greReps); err != nil {
				t.Fatal(err)
			}
			for _, f := range forgedICMPCases() {
				want["packets_"+f.reason] += greReps
			}
		}
	}
	var s map[string]uint64
	delta := func(k string) uint64 { return s[k] - st[k] }
	l.MustWaitFor("malformed input counted", func() error {
		s = gw.MustStats()
		for k, n := range want {
			if d := delta(k); d < n {
				return fmt.Errorf("%s rose by %d, want %d", k, d, n)
			}
		}
		return nil
	}, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // anything counted twice would show by now
	s = gw.MustStats()
	for k, n := range want {
		if d := delta(k); d != n {
			t.Errorf("%s rose by %d, want exactly %d", k, d, n)
		}
	}
	for _, k := range []string{"packets_truncated", "packets_gre_local", "packets_icmp_unknown_call",
		"queue_handler_panics", "queue_verdict_errors", "calls_refused"} {
		if d := delta(k); d != 0 {
			t.Errorf("%s rose by %d, want 0", k, d)
		}
	}
	if d := delta("control_conns_opened"); d < uint64(len(ctrl)) {
		t.Errorf("control_conns_opened rose by %d, want >= %d (every bad connection tracked)", d, len(ctrl))
	}
	var got []string
	for k := range want {
		got = append(got, fmt.Sprintf("%s +%d", k, delta(k)))
	}
	sort.Strings(got)
	t.Logf("%d bad control connections, %d bad GRE kinds x %d from 2 outside addresses and outbound, "+
		"%d forged ICMP kinds x %d calls x 2 senders: %s", len(ctrl), len(inCases), greReps,
		len(forgedICMPCases()), len(b.calls), strings.Join(got, ", "))

	// The daemon is up and answers; the live calls carry on.
	if done, err := gw.Exited(); done {
		t.Fatalf("pptpgw exited: %v", err)
	}
	if err := gw.Healthz(); err != nil {
		t.Errorf("after the barrage: %v", err)
	}
	rising := waitRising(l, "echo replies still rising on both ends after the barrage", b.ends, b.srv, first, 10*time.Second)
	after := waitCalls(l, gw, 2, nil, 5*time.Second)
	for i := range b.calls {
		if b.calls[i].ID != after[i].ID || after[i].PacketsIn <= b.calls[i].PacketsIn || after[i].PacketsOut <= b.calls[i].PacketsOut {
			t.Errorf("call changed or stalled: %s -> %s", b.calls[i], after[i])
		}
	}
	for name, cp := range rising {
		t.Logf("%s: echo replies client %d -> %d, server %d -> %d", name,
			first[name].client.EchoRepRecv, cp.client.EchoRepRecv, first[name].server.EchoRepRecv, cp.server.EchoRepRecv)
	}
	if st := gw.MustStats(); st["calls_active"] != 2 {
		t.Errorf("calls_active = %d, want 2", st["calls_active"])
	}
	// Not one ICMP message left the public address towards the outside.
	if n, err := lab.CountPackets(icmpOut.Stop(), ""); err != nil || n != 0 {
		t.Errorf("the gateway sent %d ICMP messages from %s to the outside (%v), want none", n, publicIP, err)
	}
}

// TestMalformedPNSInside: a pptp-linux and a pptpcli call through the
// MASQUERADE gateway; an inside host sends the bad control messages to
// the server (and the GRE the rules leave to the kernel to the public
// address), the server end sends bad GRE to the public address, the
// inside end of a live call sends bad GRE to the server.
func TestMalformedPNSInside(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 3)
	l := tp.l
	// A third outside address, on the server's host.
	tp.srv.AddAddr("eth0", thirdOutside+"/24")
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info", Args: []string{"--gre-path", "queue"}}) // the queues see the GRE
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	c2 := tp.clients[1].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(1), CallID: 1000})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	waitEchoes(l, "LCP opened", ends, srv, 1, 20*time.Second)
	calls := waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	var liveNS *lab.NS
	for i, c := range tp.clients[:2] {
		if clientIP(i) == calls[0].InsideAddr {
			liveNS = c
		}
	}
	if liveNS == nil {
		t.Fatalf("no client namespace for %s", calls[0])
	}
	b := &barrage{l: l, gw: gw, srv: srv, ends: ends, calls: calls,
		gwNS: tp.gw, wan: "wan", ctrlFrom: tp.clients[2], ctrlSrc: clientIP(2), ctrlDst: serverIP,
		inNS: tp.srv, outNS: liveNS, peerNS: map[string]*lab.NS{serverIP: tp.srv},
		strayNS: tp.srv, straySrc: thirdOutside}
	b.run(t)
}

// TestMalformedPACInside: pptpd behind a port-forward, called by an
// outside pptp-linux and an outside pptpcli; a third outside host sends
// the bad control messages to the public address (DNATed to pptpd), and
// the GRE the rules leave to the kernel; the outside end of a live call sends bad GRE to the public address, pptpd's
// host sends bad GRE to that peer.
func TestMalformedPACInside(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	outside := []string{"198.51.100.10", "198.51.100.11", "198.51.100.12"}
	gwNS, srvNS, outs := newPACTopo(l, outside)
	gw := gwNS.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info", Args: []string{"--gre-path", "queue"}}) // the queues see the GRE
	srv := srvNS.StartPPTPD(lab.PPTPDConfig{})
	c1 := outs[0].StartPPTPClient(lab.PPTPClientConfig{Server: publicIP, LocalBind: outside[0]})
	c2 := outs[1].StartPPTPCli(lab.PPTPCliConfig{Server: publicIP, Local: outside[1], CallID: 7})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	waitEchoes(l, "LCP opened", ends, srv, 1, 20*time.Second)
	calls := waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	var peerNS *lab.NS
	for i, a := range outside[:2] {
		if a == calls[0].PeerAddr {
			peerNS = outs[i]
		}
	}
	if peerNS == nil || calls[0].Role != "pac-inside" {
		t.Fatalf("no outside namespace for %s", calls[0])
	}
	b := &barrage{l: l, gw: gw, srv: srv, ends: ends, calls: calls,
		gwNS: gwNS, wan: "wan", ctrlFrom: outs[2], ctrlSrc: outside[2], ctrlDst: publicIP,
		inNS: peerNS, outNS: srvNS, peerNS: map[string]*lab.NS{outside[0]: outs[0], outside[1]: outs[1]},
		strayNS: outs[2], straySrc: outside[2]}
	b.run(t)
}
