package nfq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// bindTimeout bounds the wait for the kernel's answer to a bind, which
// comes at once unless something is badly wrong.
const bindTimeout = 5 * time.Second

// Runner serves a range of queues until its context ends or Close.
type Runner struct {
	cfg    Config
	cancel context.CancelFunc
	ctxEnd <-chan struct{} // the runner's context's Done: stopping
	done   chan struct{}
	queues []*queue
	wg     sync.WaitGroup // the receive loops

	errMu sync.Mutex
	err   error // what stopped the runner, if a failure did

	packets, dropped, modified, marked atomic.Uint64
	verdictErrors, panics, noBuffers   atomic.Uint64
}

type queue struct {
	num     uint16
	conn    *netlink.Conn
	vw      *verdictWriter
	rd      *reader
	bound   chan error // the bind's answer, sent once by the loop
	acked   bool       // the loop has sent it
	log     *zap.Logger
	lastLog atomic.Int64 // unix nanoseconds of the last rate-limited log
}

// Open binds queues cfg.Queue..cfg.Queue+cfg.Queues-1 and starts serving
// them with h. It fails, binding nothing, if any queue cannot be bound
// (another process holds it, or no CAP_NET_ADMIN). The runner stops when
// ctx ends, Close is called, or a queue's socket fails for good.
func Open(ctx context.Context, cfg Config, h Handler) (*Runner, error) {
	cfg = cfg.withDefaults()
	if h == nil {
		return nil, errors.New("nfq: nil handler")
	}
	if int(cfg.Queue)+int(cfg.Queues)-1 > 65535 {
		return nil, fmt.Errorf("queues %d..%d: beyond 65535", cfg.Queue, int(cfg.Queue)+int(cfg.Queues)-1)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Runner{cfg: cfg, cancel: cancel, ctxEnd: ctx.Done(), done: make(chan struct{})}
	err := r.bindAll(ctx, h)
	go r.stopOnDone()
	if err != nil {
		cancel()
		<-r.done
		return nil, err
	}
	for _, q := range r.queues {
		q.log.Info("queue started", zap.Bool("fail_open", cfg.FailOpen), zap.Uint32("max_queue_len", cfg.MaxQueueLen))
	}
	return r, nil
}

// bindAll opens and binds every queue, starting each one's receive loop
// as soon as its bind is sent, and waits for the kernel's answers.
func (r *Runner) bindAll(ctx context.Context, h Handler) error {
	for i := range r.cfg.Queues {
		q, err := r.bind(r.cfg.Queue + i)
		if err != nil {
			return err
		}
		r.queues = append(r.queues, q)
		r.wg.Add(1)
		go r.serve(q, h)
	}
	t := time.NewTimer(bindTimeout)
	defer t.Stop()
	for _, q := range r.queues {
		select {
		case err := <-q.bound:
			if err != nil {
				return fmt.Errorf("bind queue %d: %w", q.num, err)
			}
		case <-ctx.Done():
			if err := r.failure(); err != nil {
				return err
			}
			return fmt.Errorf("bind queue %d: %w", q.num, ctx.Err())
		case <-t.C:
			return fmt.Errorf("bind queue %d: no answer from the kernel in %v", q.num, bindTimeout)
		}
	}
	return nil
}

// bind opens queue num's socket and sends the bind; the queue's loop
// receives the answer.
func (r *Runner) bind(num uint16) (*queue, error) {
	c, raw, err := dial(r.cfg)
	if err != nil {
		return nil, fmt.Errorf("queue %d: %w", num, err)
	}
	if _, err := c.Send(bindMessage(num, r.cfg)); err != nil {
		c.Close()
		return nil, fmt.Errorf("bind queue %d: %w", num, err)
	}
	return &queue{
		num:   num,
		conn:  c,
		vw:    newVerdictWriter(raw, c, num, r.cfg.WriteTimeout),
		rd:    newReader(raw),
		bound: make(chan error, 1),
		log:   r.cfg.Logger.With(zap.Uint16("queue", num)),
	}, nil
}

// stopOnDone closes the sockets once the runner's context ends, which
// ends the receive loops' waits and unbinds the queues; the kernel drops
// what was still queued (or accepts it with --queue-bypass).
func (r *Runner) stopOnDone() {
	<-r.ctxEnd
	for _, q := range r.queues {
		if err := q.conn.Close(); err != nil {
			q.log.Debug("close queue socket", zap.Error(err))
		}
	}
	r.wg.Wait()
	for _, q := range r.queues {
		if q.acked {
			q.log.Info("queue stopped")
		}
	}
	close(r.done)
}

// stopping reports whether the runner's context has ended.
func (r *Runner) stopping() bool {
	select {
	case <-r.ctxEnd:
		return true
	default:
		return false
	}
}

// handle runs the handler on one queued packet and queues its verdict in
// the batch. pkt must stay untouched until the next flush.
func (r *Runner) handle(q *queue, h Handler, id uint32, pkt []byte, mark uint32, meta Meta) {
	r.packets.Add(1)
	v, newMark, modified := r.call(q, h, pkt, mark, meta)
	setMark := newMark != mark
	nv := uint32(nfAccept)
	var payload []byte
	switch {
	case v == Drop:
		r.dropped.Add(1)
		nv, setMark = nfDrop, false
	case modified:
		payload = pkt
		r.modified.Add(1)
	}
	if setMark {
		r.marked.Add(1)
	}
	if !q.vw.room(verdictLen(setMark, payload)) {
		r.flush(q)
	}
	q.vw.encode(id, nv, setMark, newMark, payload)
}

// flush writes the batch's verdicts in one message.
func (r *Runner) flush(q *queue) {
	if q.vw.count == 0 {
		return
	}
	n := q.vw.count
	if err := q.vw.send(); err != nil && !r.stopping() {
		r.verdictErrors.Add(uint64(n))
		q.rateLimited(zap.WarnLevel, "verdict failed", zap.Int("verdicts", n), zap.Error(err))
	}
}

// call runs the handler; a panic drops the packet (the queues are
// fail-closed) instead of killing the daemon and every call with it.
func (r *Runner) call(q *queue, h Handler, pkt []byte, mark uint32, meta Meta) (v Verdict, newMark uint32, modified bool) {
	defer func() {
		if p := recover(); p != nil {
			r.panics.Add(1)
			q.rateLimited(zap.ErrorLevel, "handler panic", zap.Any("panic", p), zap.Stack("stack"))
			v, newMark, modified = Drop, mark, false
		}
	}()
	return h(q.num, pkt, mark, meta)
}

// fail stops the runner; the first failure is what Wait returns.
func (r *Runner) fail(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
		r.cfg.Logger.Error("queue failed, stopping", zap.Error(err))
	}
	r.errMu.Unlock()
	r.cancel()
}

// failure returns the error that stopped the runner, if one did.
func (r *Runner) failure() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// Close stops the runner and waits for its goroutines. It returns the
// error that stopped a queue, if one did.
func (r *Runner) Close() error {
	r.cancel()
	return r.Wait()
}

// Wait blocks until the runner has stopped (context ended, Close, or a
// queue failed) and returns the failure, or nil for a requested stop.
func (r *Runner) Wait() error {
	<-r.done
	return r.failure()
}

// Done is closed once the runner has stopped.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Stats returns the runner's counters.
func (r *Runner) Stats() Stats {
	return Stats{
		Packets:       r.packets.Load(),
		Dropped:       r.dropped.Load(),
		Modified:      r.modified.Load(),
		Marked:        r.marked.Load(),
		VerdictErrors: r.verdictErrors.Load(),
		Panics:        r.panics.Load(),
		NoBuffers:     r.noBuffers.Load(),
	}
}

// rateLimited logs at most once a second per queue: these happen per
// packet when something is wrong, and must not flood the log.
func (q *queue) rateLimited(lvl zapcore.Level, msg string, fields ...zap.Field) {
	now := time.Now().UnixNano()
	last := q.lastLog.Load()
	if now-last < int64(time.Second) || !q.lastLog.CompareAndSwap(last, now) {
		return
	}
	if ce := q.log.Check(lvl, msg); ce != nil {
		ce.Write(fields...)
	}
}
