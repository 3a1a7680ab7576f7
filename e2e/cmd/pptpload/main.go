// Command pptpload is a PPTP client (PNS) for the lab's scale bench: it sets
// up many calls with the control channel only (no PPP, no GRE), holds them
// until SIGTERM or SIGINT, then clears them (CCRQ per call, waits for CDN,
// Stop-Control-Connection-Request) and exits.
//
//	pptpload --server 198.51.100.2 --calls 10000 --per-conn 1 --call-id 1000 --concurrency 64 --status load.json
//
// --per-conn 1 opens one control connection per call, which is what the
// kernel's own PPTP helper needs (it tracks one call per control connection)
// and what real clients do; higher values put that many calls on each
// connection. Our Call IDs count up from --call-id over all calls. At most
// --concurrency connections are being set up at once.
//
// It prints one JSON line when every call is set up (or failed) and one
// after clearing; the status file (rewritten every 200 ms) holds the latest.
// "seconds" is the time from the first connect to the last OCRP, "rate" the
// calls set up per second over it.
//
// Exit status: 0 when every call was set up and cleared, 1 otherwise, 2 for
// bad flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
)

type config struct {
	server, local string
	calls         int
	perConn       int
	callID        int
	concurrency   int
	timeout       time.Duration
	status        string
}

// report is the JSON pptpload prints and keeps in its status file.
type report struct {
	PID         int     `json:"pid"`
	State       string  `json:"state"` // "setting-up", "holding", "clearing", "done"
	Connections int64   `json:"connections"`
	Calls       int64   `json:"calls"`  // calls established (OCRP result 1)
	Failed      int64   `json:"failed"` // calls refused or lost with their connection
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"`
	Cleared     int64   `json:"cleared"` // calls whose CDN arrived after our CCRQ
	Error       string  `json:"error,omitempty"`
}

// conn is one control connection and the calls on it.
type conn struct {
	c      net.Conn
	wmu    sync.Mutex // the reader answers Echo-Requests while clear writes CCRQs
	ids    []uint16   // our Call IDs of its established calls
	events chan []byte
}

type load struct {
	cfg     config
	conns   atomic.Int64
	calls   atomic.Int64
	failed  atomic.Int64
	cleared atomic.Int64

	mu      sync.Mutex
	held    []*conn
	state   string
	seconds float64
	errText string
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix(fmt.Sprintf("pptpload[%d]: ", os.Getpid()))
	var cfg config
	flag.StringVar(&cfg.server, "server", "", "PAC (server) IPv4 address")
	flag.StringVar(&cfg.local, "local", "", "local IPv4 address (default: any)")
	flag.IntVar(&cfg.calls, "calls", 1, "calls to set up")
	flag.IntVar(&cfg.perConn, "per-conn", 1, "calls per control connection")
	flag.IntVar(&cfg.callID, "call-id", 1, "our Call ID of the first call; later calls count up")
	flag.IntVar(&cfg.concurrency, "concurrency", 64, "control connections set up at once")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "wait this long for each reply")
	flag.StringVar(&cfg.status, "status", "", "status JSON file")
	flag.Parse()
	switch {
	case net.ParseIP(cfg.server).To4() == nil:
		log.Print("--server must be an IPv4 address")
		os.Exit(2)
	case cfg.local != "" && net.ParseIP(cfg.local).To4() == nil:
		log.Print("--local must be an IPv4 address")
		os.Exit(2)
	case cfg.calls < 1 || cfg.perConn < 1 || cfg.concurrency < 1:
		log.Print("--calls, --per-conn and --concurrency must be at least 1")
		os.Exit(2)
	case cfg.callID < 0 || cfg.callID+cfg.calls-1 > 0xFFFF:
		log.Print("--call-id and --calls must give Call IDs in 0..65535")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l := &load{cfg: cfg, state: "setting-up"}
	stopStatus := l.statusLoop()
	l.setUp(ctx)
	l.print()
	<-ctx.Done()
	l.clear()
	stopStatus()
	l.print()
	if r := l.report(); r.Failed > 0 || r.Cleared != r.Calls {
		os.Exit(1)
	}
}

// setUp opens every connection and call, at most cfg.concurrency
// connections at a time, and leaves the good ones held.
func (l *load) setUp(ctx context.Context) {
	start := time.Now()
	sem := make(chan struct{}, l.cfg.concurrency)
	var wg sync.WaitGroup
	for first := 0; first < l.cfg.calls; first += l.cfg.perConn {
		n := min(l.cfg.perConn, l.cfg.calls-first)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			l.failed.Add(int64(l.cfg.calls - first))
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := l.open(ctx, uint16(l.cfg.callID+first), n)
			if err != nil {
				l.setError(err)
			}
			if c != nil && len(c.ids) > 0 {
				l.mu.Lock()
				l.held = append(l.held, c)
				l.mu.Unlock()
				go c.read()
			} else if c != nil {
				c.c.Close()
			}
		}()
	}
	wg.Wait()
	l.mu.Lock()
	l.seconds = time.Since(start).Seconds()
	l.state = "holding"
	l.mu.Unlock()
}

// open sets up one control connection with n calls whose Call IDs start at
// first. It returns the connection with the calls that were set up, and
// the first error; the calls it did not set up are counted as failed.
func (l *load) open(ctx context.Context, first uint16, n int) (*conn, error) {
	d := net.Dialer{Timeout: l.cfg.timeout}
	if l.cfg.local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(l.cfg.local)}
	}
	nc, err := d.DialContext(ctx, "tcp4", net.JoinHostPort(l.cfg.server, "1723"))
	if err != nil {
		l.failed.Add(int64(n))
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &conn{c: nc, events: make(chan []byte, 4)}
	l.conns.Add(1)
	if err := c.request(pptpmsg.NewSCCRQ("pptpload"), l.cfg.timeout, func(m []byte) bool {
		return pptpmsg.Type(m) == pptpmsg.SCCRP
	}); err != nil {
		l.failed.Add(int64(n))
		return c, fmt.Errorf("SCCRQ: %w", err)
	}
	for i := range n {
		id := first + uint16(i)
		var ocrp []byte
		err := c.request(pptpmsg.NewOCRQ(id, id), l.cfg.timeout, func(m []byte) bool {
			ocrp = m
			return pptpmsg.Type(m) == pptpmsg.OCRP && pptpmsg.Field(m, 14) == id
		})
		if err != nil {
			l.failed.Add(int64(n - i))
			return c, fmt.Errorf("OCRQ for call %d: %w", id, err)
		}
		if r := pptpmsg.Byte(ocrp, 16); r != 1 {
			l.failed.Add(1)
			l.setError(fmt.Errorf("call %d refused: OCRP result %d", id, r))
			continue
		}
		c.ids = append(c.ids, id)
		l.calls.Add(1)
	}
	return c, nil
}

// request sends m and reads until want says yes, answering Echo-Requests
// on the way. Only for the setup, before read runs.
func (c *conn) request(m []byte, timeout time.Duration, want func([]byte) bool) error {
	c.c.SetDeadline(time.Now().Add(timeout))
	defer c.c.SetDeadline(time.Time{})
	if _, err := c.c.Write(m); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for {
		r, err := pptpmsg.Read(c.c)
		if err != nil {
			return fmt.Errorf("await reply: %w", err)
		}
		if want(r) {
			return nil
		}
		if pptpmsg.Type(r) == pptpmsg.EchoRQ {
			if _, err := c.c.Write(pptpmsg.NewEchoRP(r[pptpmsg.HeaderLen:])); err != nil {
				return fmt.Errorf("send Echo-Reply: %w", err)
			}
		}
	}
}

func (c *conn) send(m []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.c.Write(m)
	return err
}

// read runs while the calls are held: it answers Echo-Requests and hands
// CDN and StopCCRP to clear; events is closed when the connection ends.
func (c *conn) read() {
	defer close(c.events)
	for {
		m, err := pptpmsg.Read(c.c)
		if err != nil {
			return
		}
		switch pptpmsg.Type(m) {
		case pptpmsg.EchoRQ:
			c.send(pptpmsg.NewEchoRP(m[pptpmsg.HeaderLen:]))
		case pptpmsg.CDN, pptpmsg.StopCCRP:
			c.events <- m
		}
	}
}

// clear ends every held call the polite way, cfg.concurrency connections
// at a time.
func (l *load) clear() {
	l.mu.Lock()
	l.state = "clearing"
	held := l.held
	l.mu.Unlock()
	sem := make(chan struct{}, l.cfg.concurrency)
	var wg sync.WaitGroup
	for _, c := range held {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l.cleared.Add(int64(c.clear(l.cfg.timeout)))
			c.c.Close()
		}()
	}
	wg.Wait()
	l.mu.Lock()
	l.state = "done"
	l.mu.Unlock()
}

// clear sends CCRQ for every call, counts the CDNs, then stops the control
// connection; it returns the calls whose CDN came.
func (c *conn) clear(timeout time.Duration) int {
	for _, id := range c.ids {
		if c.send(pptpmsg.NewCCRQ(id)) != nil {
			return 0
		}
	}
	deadline := time.After(timeout)
	cdns := 0
	for cdns < len(c.ids) {
		select {
		case m, ok := <-c.events:
			if !ok {
				return cdns
			}
			if pptpmsg.Type(m) == pptpmsg.CDN {
				cdns++
			}
		case <-deadline:
			return cdns
		}
	}
	if c.send(pptpmsg.NewStopCCRQ()) != nil {
		return cdns
	}
	for {
		select {
		case m, ok := <-c.events:
			if !ok || pptpmsg.Type(m) == pptpmsg.StopCCRP {
				return cdns
			}
		case <-deadline:
			return cdns
		}
	}
}

func (l *load) setError(err error) {
	l.mu.Lock()
	if l.errText == "" {
		l.errText = err.Error()
	}
	l.mu.Unlock()
}

func (l *load) report() report {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := report{PID: os.Getpid(), State: l.state, Connections: l.conns.Load(), Calls: l.calls.Load(),
		Failed: l.failed.Load(), Seconds: l.seconds, Cleared: l.cleared.Load(), Error: l.errText}
	if r.Seconds > 0 {
		r.Rate = float64(r.Calls) / r.Seconds
	}
	return r
}

func (l *load) print() {
	b, _ := json.Marshal(l.report())
	fmt.Println(string(b))
}

// statusLoop rewrites the status file every 200 ms until stop is called,
// and once more then.
func (l *load) statusLoop() (stop func()) {
	if l.cfg.status == "" {
		return func() {}
	}
	write := func() {
		b, _ := json.Marshal(l.report())
		// Renamed into place: a reader never sees half a file.
		if err := os.WriteFile(l.cfg.status+".tmp", b, 0o644); err != nil {
			log.Print(err)
			return
		}
		if err := os.Rename(l.cfg.status+".tmp", l.cfg.status); err != nil {
			log.Print(err)
		}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			write()
			select {
			case <-done:
				write()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
