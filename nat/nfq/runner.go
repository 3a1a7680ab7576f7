package nfq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// Runner serves a range of queues until its context ends or Close.
type Runner struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}
	queues []*queue

	errOnce sync.Once
	err     error

	packets, dropped, modified, marked atomic.Uint64
	verdictErrors, panics, noBuffers   atomic.Uint64
}

type queue struct {
	num     uint16
	nf      *nfqueue.Nfqueue
	vw      *verdictWriter // nil: verdicts through go-nfqueue
	rd      *reader        // nil: packets through go-nfqueue's loop
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
	r := &Runner{cfg: cfg, cancel: cancel, done: make(chan struct{})}
	for i := uint16(0); i < cfg.Queues; i++ {
		q, err := r.bind(ctx, cfg.Queue+i, h)
		if err != nil {
			cancel()
			r.closeQueues()
			return nil, err
		}
		r.queues = append(r.queues, q)
		q.log.Info("queue started", zap.Bool("fail_open", cfg.FailOpen), zap.Uint32("max_queue_len", cfg.MaxQueueLen))
	}
	go func() {
		<-ctx.Done()
		r.closeQueues()
		close(r.done)
	}()
	return r, nil
}

func (r *Runner) bind(ctx context.Context, num uint16, h Handler) (*queue, error) {
	q := &queue{num: num, log: r.cfg.Logger.With(zap.Uint16("queue", num))}
	var flags uint32 // no GSO: the ALG needs segmented packets with full checksums
	if r.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      num,
		MaxPacketLen: MaxPacketLen,
		MaxQueueLen:  r.cfg.MaxQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        flags,
		AfFamily:     unix.AF_INET,
		WriteTimeout: r.cfg.WriteTimeout,
		NetNS:        r.cfg.NetNS,
		Logger:       libLogger{log: q.log, closing: ctx.Done()},
	})
	if err != nil {
		return nil, fmt.Errorf("open queue %d: %w", num, err)
	}
	q.nf = nf
	if raw, err := nf.Con.SyscallConn(); err == nil {
		q.vw = newVerdictWriter(raw, num)
		q.rd = newReader(raw)
	}
	// Without NoENOBUFS a full socket buffer makes Receive fail; with it
	// the kernel drops quietly and counts in /proc (ReadProcStats).
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close()
		return nil, fmt.Errorf("queue %d: set NoENOBUFS: %w", num, err)
	}
	if err := nf.Con.SetReadBuffer(r.cfg.BufferSize); err != nil {
		nf.Close()
		return nil, fmt.Errorf("queue %d: set read buffer: %w", num, err)
	}
	if err := nf.Con.SetWriteBuffer(r.cfg.BufferSize); err != nil {
		nf.Close()
		return nil, fmt.Errorf("queue %d: set write buffer: %w", num, err)
	}
	if err := nf.RegisterWithErrorFunc(ctx, r.hook(ctx, q, h), r.errFunc(ctx, q)); err != nil {
		nf.Close()
		return nil, fmt.Errorf("bind queue %d: %w", num, err)
	}
	return q, nil
}

// hook adapts the Handler to go-nfqueue, on the queue's receive goroutine.
// After the first packet it keeps that goroutine and reads the socket
// itself (recv.go) until the context ends.
func (r *Runner) hook(ctx context.Context, q *queue, h Handler) nfqueue.HookFunc {
	return func(a nfqueue.Attribute) int {
		if a.PacketID != nil && a.Payload != nil {
			var mark uint32
			if a.Mark != nil {
				mark = *a.Mark
			}
			meta := Meta{HasInDev: a.InDev != nil}
			if a.Hook != nil {
				meta.Hook = *a.Hook
			}
			r.packet(q, h, *a.PacketID, *a.Payload, mark, meta)
		}
		if q.rd != nil && q.vw != nil {
			return r.serve(ctx, q, h)
		}
		return 0
	}
}

// packet runs the handler on one queued packet and sends its verdict.
func (r *Runner) packet(q *queue, h Handler, id uint32, pkt []byte, mark uint32, meta Meta) {
	r.handle(q, h, id, pkt, mark, meta)
	r.flush(q)
}

// handle runs the handler on one queued packet and queues its verdict in
// the batch (or, without the raw socket, sends it at once). pkt must stay
// untouched until the next flush.
func (r *Runner) handle(q *queue, h Handler, id uint32, pkt []byte, mark uint32, meta Meta) {
	r.packets.Add(1)
	v, newMark, modified := r.call(q, h, pkt, mark, meta)
	if v == Drop {
		r.dropped.Add(1)
	} else {
		if modified {
			r.modified.Add(1)
		}
		if newMark != mark {
			r.marked.Add(1)
		}
	}
	pv := pendingVerdict{id: id, v: v, modified: modified, setMark: newMark != mark, mark: newMark, pkt: pkt}
	if q.vw == nil || !fits(len(pkt)) {
		r.flush(q) // keep the order of the verdicts
		r.slowVerdict(q, pv)
		return
	}
	var payload []byte
	if modified && v != Drop {
		payload = pkt
	}
	nv := uint32(nfAccept)
	if v == Drop {
		nv, pv.setMark = nfDrop, false
	}
	if !q.vw.room(verdictLen(pv.setMark, payload)) {
		r.flush(q)
	}
	q.vw.encode(id, nv, pv.setMark, newMark, payload)
	q.vw.pend = append(q.vw.pend, pv)
}

// flush writes the batch's verdicts in one message, without blocking.
// When the socket buffer is full they go one by one through go-nfqueue,
// whose send waits up to the write timeout.
func (r *Runner) flush(q *queue) {
	if q.vw == nil || len(q.vw.pend) == 0 {
		return
	}
	err := q.vw.send()
	pend := q.vw.pend
	q.vw.pend = pend[:0]
	switch {
	case errors.Is(err, errWouldBlock):
		for i := range pend {
			r.slowVerdict(q, pend[i])
		}
	case err != nil:
		r.verdictErrors.Add(uint64(len(pend)))
		q.rateLimited(zap.WarnLevel, "verdict failed", zap.Int("verdicts", len(pend)), zap.Error(err))
	}
	// drop the references to packets: the hook's first one is the library's
	for i := range pend {
		pend[i].pkt = nil
	}
}

// slowVerdict sends one verdict through go-nfqueue.
func (r *Runner) slowVerdict(q *queue, pv pendingVerdict) {
	var err error
	switch {
	case pv.v == Drop:
		err = q.nf.SetVerdict(pv.id, nfqueue.NfDrop)
	case pv.modified && pv.setMark:
		err = q.nf.SetVerdictWithOption(pv.id, nfqueue.NfAccept, nfqueue.WithAlteredPacket(pv.pkt), nfqueue.WithMark(pv.mark))
	case pv.modified:
		err = q.nf.SetVerdictWithOption(pv.id, nfqueue.NfAccept, nfqueue.WithAlteredPacket(pv.pkt))
	case pv.setMark:
		err = q.nf.SetVerdictWithOption(pv.id, nfqueue.NfAccept, nfqueue.WithMark(pv.mark))
	default:
		err = q.nf.SetVerdict(pv.id, nfqueue.NfAccept)
	}
	if err != nil {
		r.verdictErrors.Add(1)
		q.rateLimited(zap.WarnLevel, "verdict failed", zap.Error(err))
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

// errFunc handles receive errors. After cancel, go-nfqueue interrupts
// Receive with a past deadline: the timeout must return 0 so its loop sees
// the cancelled context and unbinds. Anything else but ENOBUFS is fatal.
func (r *Runner) errFunc(ctx context.Context, q *queue) nfqueue.ErrorFunc {
	return func(err error) int {
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return 0
		case errors.Is(err, unix.ENOBUFS):
			r.noBuffers.Add(1)
			q.rateLimited(zap.WarnLevel, "receive buffer overrun, kernel dropped packets")
			return 0
		case errors.As(err, &ne) && ne.Timeout():
			return 0
		}
		r.fail(fmt.Errorf("queue %d: receive: %w", q.num, err))
		return 1
	}
}

func (r *Runner) fail(err error) {
	r.errOnce.Do(func() {
		r.err = err
		r.cfg.Logger.Error("queue failed, stopping", zap.Error(err))
	})
	r.cancel()
}

// closeQueues closes every socket, which unbinds its queue; the kernel
// drops what was still queued (or accepts it with --queue-bypass).
func (r *Runner) closeQueues() {
	for _, q := range r.queues {
		if err := q.nf.Close(); err != nil {
			q.log.Debug("close queue socket", zap.Error(err))
		}
		q.log.Info("queue stopped")
	}
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
	return r.err
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

// libLogger adapts zap to go-nfqueue's Logger. The library logs its
// normal stop ("Stop receiving nfqueue messages: context canceled") and
// the unbind racing the socket's close at Errorf; once the runner is
// closing, those go to debug so a clean shutdown logs no errors.
type libLogger struct {
	log     *zap.Logger
	closing <-chan struct{}
}

func (l libLogger) Debugf(format string, args ...any) {
	if ce := l.log.Check(zap.DebugLevel, "nfqueue library"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}

func (l libLogger) Errorf(format string, args ...any) {
	lvl := zap.WarnLevel
	select {
	case <-l.closing:
		lvl = zap.DebugLevel
	default:
	}
	if ce := l.log.Check(lvl, "nfqueue library"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}
