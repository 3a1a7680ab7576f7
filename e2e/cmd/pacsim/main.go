// Command pacsim is a minimal PPTP server (PAC) for the lab's scale tests:
// pptpd starts a PPP program per call and cannot hold thousands of them, and
// the scale bench needs only the control channel to set calls up. It listens
// on TCP 1723 and, per control connection, answers SCCRQ with SCCRP, each
// OCRQ with an OCRP (result 1, its own Call IDs counting up from --call-id
// across all connections, PeerCallID = the OCRQ's Call ID), Echo-Request
// with Echo-Reply, CCRQ with CDN, Stop-Control-Connection-Request with its
// reply (then closes); SLI and anything else are ignored. No PPP, no GRE.
//
//	pacsim --listen 198.51.100.2 --call-id 1 --status pacsim.json
//
// The status file (rewritten every 200 ms and at exit) counts connections
// and calls. SIGTERM or SIGINT ends it (exit 0).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

// status is what the status file holds.
type status struct {
	PID         int    `json:"pid"`
	Listening   bool   `json:"listening"`
	Connections uint64 `json:"connections"` // accepted so far
	Open        int64  `json:"open"`        // control connections now open
	Calls       uint64 `json:"calls"`       // OCRPs sent
	Cleared     uint64 `json:"cleared"`     // CDNs sent for CCRQ
	Errors      uint64 `json:"errors"`      // connections ended by a bad message
}

type pac struct {
	nextID  atomic.Uint32 // the next PAC Call ID, low 16 bits
	conns   atomic.Uint64
	open    atomic.Int64
	calls   atomic.Uint64
	cleared atomic.Uint64
	errs    atomic.Uint64
	verbose bool
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix(fmt.Sprintf("pacsim[%d]: ", os.Getpid()))
	listen := flag.String("listen", "", "IPv4 address to listen on (port 1723)")
	callID := flag.Uint("call-id", 1, "the first PAC Call ID; later calls count up (mod 65536)")
	statusPath := flag.String("status", "", "status JSON file")
	verbose := flag.Bool("verbose", false, "log every control message")
	flag.Parse()
	if net.ParseIP(*listen).To4() == nil || *callID > 0xFFFF {
		log.Print("--listen must be an IPv4 address, --call-id in 0..65535")
		os.Exit(2)
	}
	p := &pac{verbose: *verbose}
	p.nextID.Store(uint32(*callID))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.run(ctx, *listen, *statusPath); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func (p *pac) run(ctx context.Context, addr, statusPath string) error {
	ln, err := net.Listen("tcp4", net.JoinHostPort(addr, "1723"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	stopStatus := p.statusLoop(statusPath)
	defer stopStatus()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// EMFILE and the like: keep serving the connections we have.
			log.Printf("accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.conns.Add(1)
		p.open.Add(1)
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.serve(c); err != nil && ctx.Err() == nil {
				p.errs.Add(1)
				log.Printf("%s: %v", c.RemoteAddr(), err)
			}
			c.Close()
			p.open.Add(-1)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	log.Printf("done: %d connections, %d calls, %d cleared", p.conns.Load(), p.calls.Load(), p.cleared.Load())
	return nil
}

// serve runs one control connection until the PNS closes it or stops it.
// The control channel is strictly request-reply here, so one goroutine
// reads and writes.
func (p *pac) serve(c net.Conn) error {
	// The PNS's Call ID -> ours, for the CDN that answers its CCRQ.
	calls := map[uint16]uint16{}
	for {
		m, err := pptpmsg.Read(c)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isEOF(err) {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		t := pptpmsg.Type(m)
		if p.verbose {
			log.Printf("%s: recv %s", c.RemoteAddr(), pptpmsg.Name(t))
		}
		var reply []byte
		switch t {
		case pptpmsg.SCCRQ:
			reply = pptpmsg.NewSCCRP("pacsim")
		case pptpmsg.OCRQ:
			ours := uint16(p.nextID.Add(1) - 1)
			peer := pptpmsg.Field(m, 12)
			calls[peer] = ours
			reply = pptpmsg.NewOCRP(ours, peer, 1)
			p.calls.Add(1)
		case pptpmsg.EchoRQ:
			reply = pptpmsg.NewEchoRP(m[pptpmsg.HeaderLen:]) // copies at most the 4-byte identifier
		case pptpmsg.CCRQ:
			peer := pptpmsg.Field(m, 12)
			ours, ok := calls[peer]
			if !ok {
				continue // not ours: a real PAC would ignore it too
			}
			delete(calls, peer)
			reply = pptpmsg.NewCDN(ours, 3) // 3: call cleared by request
			p.cleared.Add(1)
		case pptpmsg.StopCCRQ:
			if _, err := c.Write(pptpmsg.NewStopCCRP()); err != nil {
				return fmt.Errorf("send StopCCRP: %w", err)
			}
			return nil
		default: // SLI, WEN, Echo-Reply, ...: nothing to answer
			continue
		}
		if _, err := c.Write(reply); err != nil {
			return fmt.Errorf("send %s: %w", pptpmsg.Name(pptpmsg.Type(reply)), err)
		}
	}
}

// isEOF is a PNS that went away: closed, or reset by the test's cleanup.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// statusLoop rewrites the status file every 200 ms until stop is called,
// and once more then.
func (p *pac) statusLoop(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	write := func(listening bool) {
		st := status{PID: os.Getpid(), Listening: listening, Connections: p.conns.Load(), Open: p.open.Load(),
			Calls: p.calls.Load(), Cleared: p.cleared.Load(), Errors: p.errs.Load()}
		b, _ := json.Marshal(st)
		// Renamed into place: a reader never sees half a file.
		if err := os.WriteFile(path+".tmp", b, 0o644); err == nil {
			os.Rename(path+".tmp", path)
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			write(true)
			select {
			case <-done:
				write(false)
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
