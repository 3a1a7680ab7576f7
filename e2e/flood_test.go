//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// Floods: GRE for unknown calls as fast as a Go sender goes, and new
// control connections at 1000 a second, each for a bounded time, while two
// real calls carry LCP echoes through the gateway. The daemon's memory
// stays bounded, the drops are counted, the calls keep flowing.
//
// E2E_FLOOD_DURATION sets each flood's length (default 5s; `make
// flood-e2e` runs the issue's 30s), E2E_FLOOD_CONN_RATE the new
// connections per second (default 1000). (Not PPTPGW_*: the daemon
// inherits the test's environment and refuses PPTPGW_ variables it does
// not know.)

const (
	sinkIP      = "198.51.100.3" // a second address of srv: a plain TCP sink on 1723
	maxFloodRSS = 200 << 20
	rssMargin   = 64 << 20
)

func floodDuration(t *testing.T) time.Duration {
	if s := os.Getenv("E2E_FLOOD_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("E2E_FLOOD_DURATION=%q: %v", s, err)
		}
		return d
	}
	return 5 * time.Second
}

func floodConnRate(t *testing.T) int {
	if s := os.Getenv("E2E_FLOOD_CONN_RATE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("E2E_FLOOD_CONN_RATE=%q: %v", s, err)
		}
		return n
	}
	return 1000
}

// rssWatch samples the daemon's RSS every 200 ms until stopped.
type rssWatch struct {
	max  atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func watchRSS(g *lab.Gateway) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			if r, err := g.RSS(); err == nil && r > w.max.Load() {
				w.max.Store(r)
			}
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return w
}

func (w *rssWatch) Stop() uint64 { close(w.stop); <-w.done; return w.max.Load() }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// linkCounter reads a /sys/class/net counter of an interface of ns.
func linkCounter(t *testing.T, ns *lab.NS, ifname, name string) uint64 {
	t.Helper()
	out, err := ns.Run("cat", "/sys/class/net/"+ifname+"/statistics/"+name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// greFlood sends enhanced GRE for the Call IDs of ids, round robin, from
// ns (its routed source address) to dst through a raw socket, as fast as
// sendto goes, for d. It returns the packets the kernel took and those it
// refused (ENOBUFS and the like).
func greFlood(ns *lab.NS, dst string, ids []uint16, d time.Duration) (sent, refused uint64, err error) {
	var fd int
	err = ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_GRE)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("raw GRE socket in %s: %w", ns.Name, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{}
	copy(to.Addr[:], net.ParseIP(dst).To4())
	pkts := make([][]byte, len(ids))
	for i, id := range ids {
		pkts[i] = greV1(id, uint16(i))
	}
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if i&1023 == 0 && time.Now().After(deadline) {
			return sent, refused, nil
		}
		if err := unix.Sendto(fd, pkts[i%len(pkts)], 0, to); err != nil {
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				refused++
				continue
			}
			return sent, refused, fmt.Errorf("sendto: %w", err)
		}
		sent++
	}
}

// connFloodStats counts what connFlood did.
type connFloodStats struct {
	opened, connected, failed, timedOut, reset int
}

// connFlood opens rate TCP connections a second from ns to dst:1723 for d,
// from one thread with non-blocking sockets: each sends an SCCRQ once
// connected, then is closed, every other one with a RST (SO_LINGER 0).
// Connections not established within 3 s are abandoned.
func connFlood(ns *lab.NS, dst string, rate int, d time.Duration) (connFloodStats, error) {
	var st connFloodStats
	to := &unix.SockaddrInet4{Port: 1723}
	copy(to.Addr[:], net.ParseIP(dst).To4())
	msg := sccrq()
	err := ns.Do(func() error {
		type pend struct {
			fd    int
			since time.Time
		}
		var pending []pend
		var pfds []unix.PollFd
		start := time.Now()
		for {
			now := time.Now()
			el := now.Sub(start)
			if el >= d {
				break
			}
			for want := int(el.Seconds() * float64(rate)); st.opened < want && len(pending) < 8192; {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("socket after %d: %w", st.opened, err)
				}
				st.opened++
				if err := unix.Connect(fd, to); err != nil && err != unix.EINPROGRESS {
					st.failed++
					unix.Close(fd)
					continue
				}
				pending = append(pending, pend{fd, now})
			}
			pfds = pfds[:0]
			for _, p := range pending {
				pfds = append(pfds, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLOUT})
			}
			if len(pfds) > 0 {
				if _, err := unix.Poll(pfds, 1); err != nil && err != unix.EINTR {
					return fmt.Errorf("poll: %w", err)
				}
			} else {
				time.Sleep(time.Millisecond)
			}
			keep := pending[:0]
			for i, p := range pending {
				switch {
				case len(pfds) > i && pfds[i].Revents != 0:
					if e, _ := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 || pfds[i].Revents&unix.POLLOUT == 0 {
						st.failed++
						unix.Close(p.fd)
						continue
					}
					st.connected++
					unix.Write(p.fd, msg)
					if st.connected%2 == 0 {
						unix.SetsockoptLinger(p.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
						st.reset++
					}
					unix.Close(p.fd)
				case now.Sub(p.since) > 3*time.Second:
					st.timedOut++
					unix.Close(p.fd)
				default:
					keep = append(keep, p)
				}
			}
			pending = keep
		}
		for _, p := range pending {
			st.timedOut++
			unix.Close(p.fd)
		}
		return nil
	})
	return st, err
}

// tcpSink accepts connections on addr:1723 in ns and reads each to its end.
func tcpSink(t *testing.T, ns *lab.NS, addr string) *atomic.Uint64 {
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(addr, "1723"))
		return err
	}); err != nil {
		t.Fatalf("sink: %v", err)
	}
	var accepted atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return &accepted
}

// echoesRose checks that, between two readings, echo replies were sent
// and received on both ends of every call.
func echoesRose(from, to map[string]callPair) error {
	for name, cp := range to {
		old := from[name]
		if cp.client.EchoRepRecv <= old.client.EchoRepRecv || cp.server.EchoRepRecv <= old.server.EchoRepRecv ||
			cp.client.EchoRepSent <= old.client.EchoRepSent || cp.server.EchoRepSent <= old.server.EchoRepSent {
			return fmt.Errorf("%s: echo replies recv client %d -> %d server %d -> %d, sent client %d -> %d server %d -> %d",
				name, old.client.EchoRepRecv, cp.client.EchoRepRecv, old.server.EchoRepRecv, cp.server.EchoRepRecv,
				old.client.EchoRepSent, cp.client.EchoRepSent, old.server.EchoRepSent, cp.server.EchoRepSent)
		}
	}
	return nil
}

func echoSummary(from, to map[string]callPair) string {
	var s []string
	for name, cp := range to {
		s = append(s, fmt.Sprintf("%s client %d->%d server %d->%d", name,
			from[name].client.EchoRepRecv, cp.client.EchoRepRecv, from[name].server.EchoRepRecv, cp.server.EchoRepRecv))
	}
	return strings.Join(s, ", ")
}

// TestFlood: not parallel, so the floods have the machine to themselves
// (and disturb no other test). Two calls (pptp-linux, pptpcli) with LCP
// echoes every 250 ms; then a GRE flood for unknown calls from the server
// to the public address, then a flood of new control connections from an
// inside host to a TCP sink behind the gateway.
func TestFlood(t *testing.T) {
	d := floodDuration(t)
	rate := floodConnRate(t)
	tp := newGWTopo(t, 3)
	l := tp.l
	tp.srv.AddAddr("eth0", sinkIP+"/24")
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info"})
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{Listen: serverIP, EchoInterval: 250 * time.Millisecond})
	sinkAccepted := tcpSink(t, tp.srv, sinkIP)
	c1 := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0), EchoInterval: 250 * time.Millisecond})
	c2 := tp.clients[1].StartPPTPCli(lab.PPTPCliConfig{Server: serverIP, Local: clientIP(1), CallID: 1000, EchoInterval: 250 * time.Millisecond})
	ends := []end{{"pptp1", c1.Status}, {"pptpcli1", c2.Status}}
	first := waitEchoes(l, "LCP opened and echoes answered on both ends of 2 calls", ends, srv, 2, 20*time.Second)
	calls := waitCalls(l, gw, 2, trafficBothWays, 5*time.Second)
	first = waitRising(l, "echo replies rising", ends, srv, first, 5*time.Second)

	rss0, err := gw.RSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flood duration %v (E2E_FLOOD_DURATION), connection rate %d/s; daemon pid %d RSS before %s",
		d, rate, gw.Pid(), mib(rss0))

	live := map[uint16]bool{}
	for _, c := range calls {
		live[c.OuterCallID] = true
	}
	var ids []uint16
	for id := uint16(40000); len(ids) < 4096; id++ {
		if !live[id] {
			ids = append(ids, id)
		}
	}

	// 1. GRE for unknown calls, as fast as one sender goes.
	st0 := gw.MustStats()
	lk0 := linkCounter(t, tp.gw, "wan", "rx_dropped") + linkCounter(t, tp.srv, "eth0", "tx_dropped")
	w := watchRSS(gw)
	start := time.Now()
	sent, refused, err := greFlood(tp.srv, publicIP, ids, d)
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	during, err := pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	callsDuring := waitCalls(l, gw, 2, nil, 5*time.Second)
	var st1 map[string]uint64
	settle := func(key string) {
		// Until the daemon has worked through its queue: the counter
		// stops moving.
		last := uint64(0)
		l.MustWaitFor(key+" settled", func() error {
			st1 = gw.MustStats()
			if v := st1[key]; v != last {
				last = v
				return fmt.Errorf("%s still moving: %d", key, v)
			}
			return nil
		}, 20*time.Second)
	}
	settle("gre_dropped_unknown_call")
	rssGRE := w.Stop()
	lk1 := linkCounter(t, tp.gw, "wan", "rx_dropped") + linkCounter(t, tp.srv, "eth0", "tx_dropped")
	dropped := st1["gre_dropped_unknown_call"] - st0["gre_dropped_unknown_call"]
	qd := st1["queue_drops"] - st0["queue_drops"]
	linkDrops := lk1 - lk0
	t.Logf("GRE flood: %d packets in %v (%.0f/s; %d refused by the sender's kernel); gre_dropped_unknown_call +%d (%.0f/s), "+
		"queue_drops +%d, veth drops +%d, queue_enobufs %d; RSS max %s",
		sent, el.Round(time.Millisecond), float64(sent)/el.Seconds(), refused, dropped, float64(dropped)/el.Seconds(),
		qd, linkDrops, st1["queue_enobufs"], mib(rssGRE))
	if dropped > sent {
		t.Errorf("gre_dropped_unknown_call rose by %d, more than the %d sent", dropped, sent)
	}
	if accounted := dropped + qd + linkDrops; accounted < sent*95/100 || dropped < sent/100 {
		t.Errorf("of %d GRE packets sent, %d counted as unknown_call, %d queue drops, %d link drops: want (almost) all accounted for",
			sent, dropped, qd, linkDrops)
	}
	// The live calls' GRE shares the queue with the flood: at a rate the
	// daemon cannot keep up with, the kernel drops (fail-closed) the same
	// share of their packets as of the flood's. Each call must still have
	// had GRE translated both ways during the flood; LCP echo round trips
	// (both packets through) are reported, and required after it.
	for i, c := range callsDuring {
		if c.ID != calls[i].ID || c.PacketsIn <= calls[i].PacketsIn || c.PacketsOut <= calls[i].PacketsOut {
			t.Errorf("call without GRE translated both ways during the GRE flood: %s -> %s", calls[i], c)
		}
	}
	if err := echoesRose(first, during); err != nil {
		t.Logf("LCP echo round trips during the GRE flood: not on every end (%.0f%% of the flood dropped by the full queue): %v",
			100*float64(qd)/float64(sent), err)
	}
	afterGRE := waitRising(l, "echo replies rising after the GRE flood", ends, srv, during, 10*time.Second)
	t.Logf("echo replies: during the GRE flood %s; after %s", echoSummary(first, during), echoSummary(during, afterGRE))

	// 2. New control connections at rate/s to the sink, from c3.
	st0 = gw.MustStats()
	acc0 := sinkAccepted.Load()
	w = watchRSS(gw)
	start = time.Now()
	cs, err := connFlood(tp.clients[2], sinkIP, rate, d)
	el = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	during, err = pairsOf(ends, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoesRose(afterGRE, during); err != nil {
		t.Errorf("LCP echoes during the connection flood: %v", err)
	}
	settle("control_conns_closed")
	rssConn := w.Stop()
	st2 := st1
	delta := func(k string) uint64 { return st2[k] - st0[k] }
	t.Logf("connection flood: %d opened in %v (%.0f/s), %d connected (%d reset, %d closed), %d failed, %d timed out; sink accepted %d; "+
		"control_conns_opened +%d, control_conns_closed +%d, control_conns_active %d, packets_control +%d, packets_control_untracked +%d, "+
		"packets_control_out_of_order +%d, malformed +%d, queue_drops +%d; RSS max %s",
		cs.opened, el.Round(time.Millisecond), float64(cs.opened)/el.Seconds(), cs.connected, cs.reset, cs.connected-cs.reset,
		cs.failed, cs.timedOut, sinkAccepted.Load()-acc0, delta("control_conns_opened"), delta("control_conns_closed"),
		st2["control_conns_active"], delta("packets_control"), delta("packets_control_untracked"),
		delta("packets_control_out_of_order"), delta("malformed"), delta("queue_drops"), mib(rssConn))
	if want := uint64(float64(rate) * d.Seconds() * 0.8); uint64(cs.opened) < want {
		t.Errorf("only %d connections opened in %v, want >= %d", cs.opened, d, want)
	}
	if c := uint64(cs.connected); delta("control_conns_opened") < c*9/10 {
		t.Errorf("control_conns_opened rose by %d for %d connections established", delta("control_conns_opened"), c)
	}
	if d := delta("malformed"); d != 0 {
		t.Errorf("malformed rose by %d: an SCCRQ then close is no framing error", d)
	}
	afterConn := waitRising(l, "echo replies rising after the connection flood", ends, srv, during, 10*time.Second)
	t.Logf("echo replies: during the connection flood %s; after %s", echoSummary(afterGRE, during), echoSummary(during, afterConn))

	// The daemon: alive, answering, its memory bounded.
	if done, err := gw.Exited(); done {
		t.Fatalf("pptpgw exited: %v", err)
	}
	// Live, not healthy: the flood may just have overflowed the queues,
	// which /healthz reports for OverflowWindow.
	if err := gw.Live(); err != nil {
		t.Error(err)
	}
	waitCalls(l, gw, 2, nil, 5*time.Second)
	rss1, err := gw.RSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS before %s, max during GRE flood %s, max during connection flood %s, after %s",
		mib(rss0), mib(rssGRE), mib(rssConn), mib(rss1))
	for _, r := range []uint64{rssGRE, rssConn, rss1} {
		if r > maxFloodRSS {
			t.Errorf("RSS %s > %s", mib(r), mib(maxFloodRSS))
		}
	}
	if rss1 > rss0+rssMargin {
		t.Errorf("RSS after the floods %s > before %s + %s", mib(rss1), mib(rss0), mib(rssMargin))
	}
	if st := gw.MustStats(); st["queue_handler_panics"] != 0 || st["calls_active"] != 2 {
		t.Errorf("after the floods: queue_handler_panics %d, calls_active %d (want 0, 2)", st["queue_handler_panics"], st["calls_active"])
	}
}
