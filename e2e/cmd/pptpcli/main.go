// Command pptpcli is a minimal PPTP client (PNS) for the lab, for tests that
// need what pptp-linux cannot give: a chosen Call ID (pptp-linux picks random
// ones) and several calls on one control connection. It speaks SCCRQ/SCCRP,
// OCRQ/OCRP per call, then PPP (LCP negotiation and echoes, the e2e/ppp
// engine) over enhanced GRE on a raw IP socket, answers the PAC's control
// echoes, notes SLI and CDN, and on SIGTERM (or after --duration) clears its
// calls (CCRQ, waits for CDN) and stops the control connection.
//
// pptpd 1.4 serves one call per control connection (a second OCRQ replaces
// the first) and closes TCP on CCRQ without sending CDN: both are reported
// in the status file, not treated as errors.
//
// Exit status: 0 after a shutdown we asked for, 1 when the control connection
// failed or the peer closed it, 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/e2e/ppp"
)

type config struct {
	server, local string
	callID        uint
	calls         int
	echo          time.Duration
	status        string
	duration      time.Duration
	untilSignal   bool
	authPAP       bool
	verbose       bool
	timeout       time.Duration
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("pptpcli[" + strconv.Itoa(os.Getpid()) + "]: ")
	var cfg config
	var auth string
	fs := flag.NewFlagSet("pptpcli", flag.ContinueOnError)
	fs.StringVar(&cfg.server, "server", "", "PAC (server) IPv4 address")
	fs.StringVar(&cfg.local, "local", "", "local IPv4 address for TCP and GRE (default: any)")
	fs.UintVar(&cfg.callID, "call-id", 0, "our Call ID in the first OCRQ; later calls count up")
	fs.IntVar(&cfg.calls, "calls", 1, "calls to open on the control connection")
	fs.DurationVar(&cfg.echo, "echo-interval", time.Second, "LCP echo interval once opened")
	fs.StringVar(&cfg.status, "status", "", "status JSON file, rewritten every 200ms")
	fs.DurationVar(&cfg.duration, "duration", 0, "shut down after this long (0: until a signal)")
	fs.BoolVar(&cfg.untilSignal, "until-signal", false, "run until SIGTERM/SIGINT, ignoring --duration")
	fs.StringVar(&auth, "auth", "none", "pap: ask for PAP in LCP Configure-Request")
	fs.BoolVar(&cfg.verbose, "verbose", false, "log every control message and LCP event")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "wait this long for each reply")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	switch {
	case net.ParseIP(cfg.server).To4() == nil:
		log.Print("--server must be an IPv4 address")
		os.Exit(2)
	case cfg.local != "" && net.ParseIP(cfg.local).To4() == nil:
		log.Print("--local must be an IPv4 address")
		os.Exit(2)
	case cfg.callID > 0xFFFF || cfg.calls < 1 || int(cfg.callID)+cfg.calls-1 > 0xFFFF:
		log.Print("--call-id and --calls must give Call IDs in 0..65535")
		os.Exit(2)
	case auth != "none" && auth != "pap":
		log.Print("--auth must be pap or none")
		os.Exit(2)
	}
	cfg.authPAP = auth == "pap"
	if cfg.untilSignal {
		cfg.duration = 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	c := &client{cfg: cfg, byID: map[uint16]*call{}, control: "connecting"}
	err := c.run(ctx)
	if err != nil {
		c.setError(err)
		log.Print(err)
	}
	c.writeStatus()
	if err != nil {
		os.Exit(1)
	}
}

type client struct {
	cfg    config
	ctrl   net.Conn
	gre    *net.IPConn
	server *net.IPAddr
	events chan []byte // control messages for the main flow; closed on EOF
	wmu    sync.Mutex  // serialises control writes (reader answers echoes)

	mu      sync.Mutex
	calls   []*call
	byID    map[uint16]*call
	control string
	sliRecv uint64
	cdnRecv uint64
	errText string
}

func (c *client) logf(format string, args ...any) {
	if c.cfg.verbose {
		log.Printf(format, args...)
	}
}

func (c *client) setControl(s string) {
	c.mu.Lock()
	c.control = s
	c.mu.Unlock()
}

func (c *client) setError(err error) {
	c.mu.Lock()
	c.errText = err.Error()
	c.mu.Unlock()
}

func (c *client) send(m []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.logf("send %s", pptpmsg.Name(pptpmsg.Type(m)))
	if _, err := c.ctrl.Write(m); err != nil {
		return fmt.Errorf("send %s: %w", pptpmsg.Name(pptpmsg.Type(m)), err)
	}
	return nil
}

func (c *client) run(ctx context.Context) error {
	c.server = &net.IPAddr{IP: net.ParseIP(c.cfg.server)}
	var laddr *net.IPAddr
	d := net.Dialer{Timeout: c.cfg.timeout}
	if c.cfg.local != "" {
		laddr = &net.IPAddr{IP: net.ParseIP(c.cfg.local)}
		d.LocalAddr = &net.TCPAddr{IP: laddr.IP}
	}
	var err error
	// The raw socket first: GRE may follow OCRP immediately.
	if c.gre, err = net.ListenIP("ip4:gre", laddr); err != nil {
		return fmt.Errorf("open GRE socket: %w", err)
	}
	defer c.gre.Close()
	if c.ctrl, err = d.DialContext(ctx, "tcp4", net.JoinHostPort(c.cfg.server, "1723")); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.ctrl.Close()
	c.events = make(chan []byte, 16)
	go c.readControl()
	go c.readGRE()

	if err := c.send(pptpmsg.NewSCCRQ("pptpcli")); err != nil {
		return err
	}
	m, err := c.await(ctx, func(m []byte) bool { return pptpmsg.Type(m) == pptpmsg.SCCRP })
	if err != nil {
		return fmt.Errorf("await SCCRP: %w", err)
	}
	if r := pptpmsg.Byte(m, 14); r != 1 {
		return fmt.Errorf("SCCRP result %d", r)
	}
	c.setControl("established")

	stopStatus := c.statusLoop()
	defer stopStatus()

	for i := range c.cfg.calls {
		if err := c.openCall(ctx, uint16(int(c.cfg.callID)+i), uint16(i+1)); err != nil {
			return err
		}
	}

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.shutdown()
		case m, ok := <-c.events:
			if !ok {
				c.setControl("closed")
				return errors.New("control connection closed by the peer")
			}
			c.logf("unexpected %s", pptpmsg.Name(pptpmsg.Type(m)))
		case now := <-tick.C:
			for _, cl := range c.snapshotCalls() {
				cl.tick(now)
			}
		}
	}
}

// openCall sends OCRQ and waits for the OCRP that names our Call ID.
func (c *client) openCall(ctx context.Context, id, serial uint16) error {
	cl := &call{id: id, gre: c.gre, server: c.server, state: "requested"}
	c.mu.Lock()
	c.calls = append(c.calls, cl)
	c.byID[id] = cl
	c.mu.Unlock()
	if err := c.send(pptpmsg.NewOCRQ(id, serial)); err != nil {
		return err
	}
	m, err := c.await(ctx, func(m []byte) bool { return pptpmsg.Type(m) == pptpmsg.OCRP && pptpmsg.Field(m, 14) == id })
	if err != nil {
		return fmt.Errorf("await OCRP for call %d: %w", id, err)
	}
	cl.mu.Lock()
	cl.peerID, cl.result = pptpmsg.Field(m, 12), pptpmsg.Byte(m, 16)
	if cl.result != 1 {
		cl.state = "failed"
		cl.mu.Unlock()
		log.Printf("call %d refused: OCRP result %d", id, cl.result)
		return nil
	}
	cl.state = "established"
	opt := ppp.Options{EchoInterval: c.cfg.echo, AuthPAP: c.cfg.authPAP}
	if c.cfg.verbose {
		opt.Logf = func(f string, a ...any) { log.Printf("call %d: "+f, append([]any{id}, a...)...) }
	}
	cl.eng = ppp.NewEngine(opt, cl.sendPPP)
	cl.mu.Unlock()
	c.logf("call %d established, peer call ID %d", id, cl.peerID)
	cl.tick(time.Now()) // Configure-Request right away, as pppd would
	return nil
}

// await returns the first control message for which want is true; others
// are logged and dropped.
func (c *client) await(ctx context.Context, want func([]byte) bool) ([]byte, error) {
	timer := time.NewTimer(c.cfg.timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.events:
			if !ok {
				return nil, errors.New("control connection closed")
			}
			if want(m) {
				return m, nil
			}
			c.logf("ignoring %s while waiting", pptpmsg.Name(pptpmsg.Type(m)))
		case <-timer.C:
			return nil, errors.New("timed out")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// shutdown clears our calls and the control connection the polite way.
// pptpd answers CCRQ by closing TCP (no CDN): EOF ends the wait as well.
func (c *client) shutdown() error {
	c.setControl("closing")
	pending := map[uint16]bool{}
	for _, cl := range c.snapshotCalls() {
		cl.mu.Lock()
		live := cl.state == "established"
		if live {
			cl.state = "cleared"
			pending[cl.peerID] = true
		}
		cl.mu.Unlock()
		if live {
			if err := c.send(pptpmsg.NewCCRQ(cl.id)); err != nil {
				c.setControl("closed")
				return nil // the peer is gone already: nothing left to clear
			}
		}
	}
	ctx := context.Background()
	for len(pending) > 0 {
		m, err := c.await(ctx, func(m []byte) bool { return pptpmsg.Type(m) == pptpmsg.CDN })
		if err != nil {
			c.logf("waiting for CDN: %v", err)
			break
		}
		delete(pending, pptpmsg.Field(m, 12))
	}
	if err := c.send(pptpmsg.NewStopCCRQ()); err == nil {
		if _, err := c.await(ctx, func(m []byte) bool { return pptpmsg.Type(m) == pptpmsg.StopCCRP }); err != nil {
			c.logf("waiting for StopCCRP: %v", err)
		}
	}
	c.setControl("closed")
	return nil
}

// readControl reads control messages, answers what needs no decision
// (echo, Stop-Control-Connection-Request), records SLI and CDN, and passes
// everything on to the main flow.
func (c *client) readControl() {
	defer close(c.events)
	for {
		m, err := pptpmsg.Read(c.ctrl)
		if err != nil {
			c.logf("control read: %v", err)
			return
		}
		t := pptpmsg.Type(m)
		c.logf("recv %s", pptpmsg.Name(t))
		switch t {
		case pptpmsg.EchoRQ:
			if len(m) >= 16 {
				c.send(pptpmsg.NewEchoRP(m[12:16]))
			}
			continue
		case pptpmsg.SLI:
			c.mu.Lock()
			c.sliRecv++
			c.mu.Unlock()
			continue
		case pptpmsg.CDN:
			c.mu.Lock()
			c.cdnRecv++
			for _, cl := range c.calls {
				cl.mu.Lock()
				if cl.peerID == pptpmsg.Field(m, 12) && (cl.state == "established" || cl.state == "cleared") {
					cl.state = "disconnected"
				}
				cl.mu.Unlock()
			}
			c.mu.Unlock()
		case pptpmsg.StopCCRQ:
			c.send(pptpmsg.NewStopCCRP())
		}
		c.events <- m
	}
}

// readGRE hands GRE from the server to the call named by the key's Call ID.
func (c *client) readGRE() {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.gre.ReadFromIP(buf)
		if err != nil {
			return
		}
		if !from.IP.Equal(c.server.IP) {
			continue
		}
		id, hasSeq, seq, payload, ok := parseGRE(buf[:n])
		if !ok {
			continue
		}
		c.mu.Lock()
		cl := c.byID[id]
		c.mu.Unlock()
		if cl != nil {
			cl.input(hasSeq, seq, payload)
		}
	}
}

func (c *client) snapshotCalls() []*call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*call(nil), c.calls...)
}

func (c *client) statusLoop() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			c.writeStatus()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// writeStatus writes the sum over all calls at the top level (lcp_opened
// only when every call opened) and each call under "calls".
func (c *client) writeStatus() {
	if c.cfg.status == "" {
		return
	}
	st := ppp.Status{PID: os.Getpid()}
	calls := c.snapshotCalls()
	st.LCPOpened = len(calls) > 0
	for _, cl := range calls {
		cs := cl.status()
		st.Calls = append(st.Calls, cs)
		st.LCPOpened = st.LCPOpened && cs.LCPOpened
		st.EchoReqSent += cs.EchoReqSent
		st.EchoReqRecv += cs.EchoReqRecv
		st.EchoRepRecv += cs.EchoRepRecv
		st.EchoRepSent += cs.EchoRepSent
		st.FramesIn += cs.FramesIn
		st.FramesOut += cs.FramesOut
		if st.Magic == 0 { // the first call's, for matching a single-call peer
			st.Magic, st.PeerMagic, st.PeerAuth = cs.Magic, cs.PeerMagic, cs.PeerAuth
		}
	}
	c.mu.Lock()
	st.Control, st.SLIRecv, st.CDNRecv, st.Error = c.control, c.sliRecv, c.cdnRecv, c.errText
	c.mu.Unlock()
	if err := ppp.WriteStatus(c.cfg.status, st); err != nil {
		log.Print(err)
	}
}
