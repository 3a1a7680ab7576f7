// Package nfqtest is an in-memory stand-in for nfq.Open, for tests of the
// code above the queues. A test injects packets into numbered queues and
// reads back what the handler decided: verdict, mark, rewritten packet.
//
// It keeps the Runner's contract: the same nfq.Handler is called from one
// goroutine per queue, in the order the packets were injected, on a copy
// of each packet it may rewrite in place; a handler panic drops the packet
// and is counted; Stats counts as the Runner does. Like the kernel, a
// queue holds at most Config.MaxQueueLen packets: one that finds it full
// is dropped, or accepted unseen with Config.FailOpen. Packets still
// queued when the source stops get no result, as the kernel drops them.
// Fail stops it the way a failing socket stops a Runner.
package nfqtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pptpgw/pptpgw/nat/nfq"
)

// ErrStopped is returned for packets injected into a stopped source, or
// still queued when it stopped.
var ErrStopped = errors.New("nfqtest: source stopped")

// Result is what became of one injected packet.
type Result struct {
	Queue    uint16
	Verdict  nfq.Verdict
	Mark     uint32 // the mark the packet leaves with (the injected one if dropped)
	Modified bool   // the packet leaves rewritten (never when dropped)
	Packet   []byte // the packet as the handler left it (a copy of the injected one)
	Panicked bool   // the handler panicked: Verdict is Drop
	Overflow bool   // the queue was full: the handler never saw it
}

type packet struct {
	pkt    []byte
	mark   uint32
	meta   nfq.Meta
	result chan Result // buffered: the queue's goroutine never waits
}

// Queues serves queues cfg.Queue..cfg.Queue+cfg.Queues-1 in memory. It
// implements nfq.Source.
type Queues struct {
	cfg    nfq.Config
	h      nfq.Handler
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
	queues []chan packet

	mu      sync.RWMutex // stopped, against Inject
	stopped bool
	err     error // what Fail stopped it with

	packets, dropped, modified, marked, panics atomic.Uint64
}

var _ nfq.Source = (*Queues)(nil)

// Open starts the queues with h, with nfq.Open's defaults and checks. It
// stops when ctx ends, Close is called, or Fail.
func Open(ctx context.Context, cfg nfq.Config, h nfq.Handler) (*Queues, error) {
	if h == nil {
		return nil, errors.New("nfqtest: nil handler")
	}
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = nfq.DefaultMaxQueueLen
	}
	if int(cfg.Queue)+int(cfg.Queues)-1 > 65535 {
		return nil, fmt.Errorf("queues %d..%d: beyond 65535", cfg.Queue, int(cfg.Queue)+int(cfg.Queues)-1)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Queues{cfg: cfg, h: h, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	for i := range cfg.Queues {
		ch := make(chan packet, cfg.MaxQueueLen)
		s.queues = append(s.queues, ch)
		s.wg.Add(1)
		go s.serve(cfg.Queue+i, ch)
	}
	go s.stopOnDone()
	return s, nil
}

// Inject queues a packet (copied) and returns where its result will come;
// the channel is closed without one if the source stops first.
func (s *Queues) Inject(queue uint16, pkt []byte, mark uint32, meta nfq.Meta) (<-chan Result, error) {
	i := int(queue) - int(s.cfg.Queue)
	if i < 0 || i >= len(s.queues) {
		return nil, fmt.Errorf("nfqtest: queue %d not in %d..%d", queue, s.cfg.Queue, int(s.cfg.Queue)+len(s.queues)-1)
	}
	p := packet{pkt: append([]byte(nil), pkt...), mark: mark, meta: meta, result: make(chan Result, 1)}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopped {
		return nil, ErrStopped
	}
	select {
	case s.queues[i] <- p:
	default:
		v := nfq.Drop
		if s.cfg.FailOpen {
			v = nfq.Accept
		}
		p.result <- Result{Queue: queue, Verdict: v, Mark: mark, Packet: p.pkt, Overflow: true}
	}
	return p.result, nil
}

// Handle injects a packet and waits for its result.
func (s *Queues) Handle(queue uint16, pkt []byte, mark uint32, meta nfq.Meta) (Result, error) {
	ch, err := s.Inject(queue, pkt, mark, meta)
	if err != nil {
		return Result{}, err
	}
	r, ok := <-ch
	if !ok {
		return Result{}, ErrStopped
	}
	return r, nil
}

// serve is one queue's goroutine. Once stopped it takes no more packets,
// even if some are waiting.
func (s *Queues) serve(q uint16, ch chan packet) {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		select {
		case <-s.ctx.Done():
			return
		case p := <-ch:
			p.result <- s.handle(q, p)
		}
	}
}

func (s *Queues) handle(q uint16, p packet) (r Result) {
	s.packets.Add(1)
	r = Result{Queue: q, Packet: p.pkt}
	defer func() {
		if e := recover(); e != nil {
			s.panics.Add(1)
			r.Verdict, r.Mark, r.Modified, r.Panicked = nfq.Drop, p.mark, false, true
		}
		if r.Verdict == nfq.Drop {
			// the Runner sends neither mark nor payload with a drop
			s.dropped.Add(1)
			r.Mark, r.Modified = p.mark, false
			return
		}
		if r.Mark != p.mark {
			s.marked.Add(1)
		}
		if r.Modified {
			s.modified.Add(1)
		}
	}()
	r.Verdict, r.Mark, r.Modified = s.h(q, p.pkt, p.mark, p.meta)
	return r
}

// stopOnDone ends the queues once the context ends and closes the result
// channels of the packets left in them.
func (s *Queues) stopOnDone() {
	<-s.ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	for _, ch := range s.queues {
		for len(ch) > 0 {
			close((<-ch).result)
		}
	}
	close(s.done)
}

// Fail stops the source as a failing socket stops a Runner: Wait returns
// err.
func (s *Queues) Fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cancel()
}

// Close stops the source and waits for it.
func (s *Queues) Close() error {
	s.cancel()
	return s.Wait()
}

// Wait blocks until the source has stopped and returns Fail's error, or
// nil for a requested stop.
func (s *Queues) Wait() error {
	<-s.done
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.err
}

// Done is closed once the source has stopped.
func (s *Queues) Done() <-chan struct{} { return s.done }

// Stats returns the counters, as the Runner keeps them.
func (s *Queues) Stats() nfq.Stats {
	return nfq.Stats{
		Packets:  s.packets.Load(),
		Dropped:  s.dropped.Load(),
		Modified: s.modified.Load(),
		Marked:   s.marked.Load(),
		Panics:   s.panics.Load(),
	}
}
