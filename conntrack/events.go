package conntrack

import (
	"context"
	"sync/atomic"
)

// Observer hears about call life events, for logs and metrics. The table
// collects them while it holds its lock and calls the observer after
// releasing it, on the goroutine that caused them (a packet worker): an
// observer that may block, like one that writes logs, must be wrapped in
// an EventBuffer so that packets never wait for it. An observer may call
// back into the table.
type Observer interface {
	CallUp(c CallInfo)
	CallRefused(c CallInfo, reason string)
	CallDown(c CallInfo, reason string)
	Malformed(conn ConnInfo, reason string)
}

// EndObserver is an Observer that also hears of every call leaving the
// table, up or not (replay's inverse translation remembers them).
type EndObserver interface {
	CallEnded(c CallInfo)
}

// DetailObserver is an Observer that also hears the finer events
// `pptpgw events` shows: control connections opened and closed, and calls
// requested (before their reply settles them). Like the others they are
// delivered after the table's lock is released.
type DetailObserver interface {
	ConnOpened(c ConnInfo)
	ConnClosed(c ConnInfo, reason string)
	CallRequested(c CallInfo)
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) CallUp(CallInfo)              {}
func (NopObserver) CallRefused(CallInfo, string) {}
func (NopObserver) CallDown(CallInfo, string)    {}
func (NopObserver) Malformed(ConnInfo, string)   {}

type eventKind uint8

const (
	evUp eventKind = iota
	evRefused
	evDown
	evMalformed
	evDenied
	evEnded
	evConnOpened
	evConnClosed
	evRequested
)

// event is one observer call, held until the lock is released.
type event struct {
	kind   eventKind
	call   CallInfo
	conn   ConnInfo
	reason string
}

// deliver makes the observer call e holds, if o listens to its kind.
func (e *event) deliver(o Observer) {
	if !hears(o, e.kind) {
		return
	}
	switch e.kind {
	case evUp:
		o.CallUp(e.call)
	case evRefused:
		o.CallRefused(e.call, e.reason)
	case evDown:
		o.CallDown(e.call, e.reason)
	case evMalformed:
		o.Malformed(e.conn, e.reason)
	case evDenied:
		o.(PolicyObserver).ControlDenied(e.conn, e.reason)
	case evEnded:
		o.(EndObserver).CallEnded(e.call)
	case evConnOpened:
		o.(DetailObserver).ConnOpened(e.conn)
	case evConnClosed:
		o.(DetailObserver).ConnClosed(e.conn, e.reason)
	case evRequested:
		o.(DetailObserver).CallRequested(e.call)
	}
}

// emitCall records a call event (t.mu held); nothing without an observer.
func (t *Table) emitCall(kind eventKind, k *Call, reason string) {
	if t.obs == nil || (kind == evEnded && !t.obsEnd) || (kind == evRequested && !t.obsDetail) {
		return
	}
	t.evs = append(t.evs, event{kind: kind, call: k.info(), reason: reason})
}

// emitConn records a connection event (t.mu held).
func (t *Table) emitConn(kind eventKind, c ConnInfo, reason string) {
	if t.obs != nil && (kind != evConnOpened && kind != evConnClosed || t.obsDetail) {
		t.evs = append(t.evs, event{kind: kind, conn: c, reason: reason})
	}
}

// lock and unlock take and release the write lock; unlock then delivers
// the events collected meanwhile, in order.
func (t *Table) lock() { t.mu.Lock() }

func (t *Table) unlock() {
	t.markState()     // state.go
	if t.evs == nil { // the usual case: nothing to deliver
		t.mu.Unlock()
		return
	}
	t.unlockDeliver()
}

func (t *Table) unlockDeliver() {
	evs := t.evs
	t.evs = nil
	t.mu.Unlock()
	for i := range evs {
		evs[i].deliver(t.obs)
	}
}

// DefaultEventBuffer is the events an EventBuffer holds: a burst of call
// teardowns (a peer's control connection with many calls dropping) fits.
const DefaultEventBuffer = 4096

// EventBuffer is an Observer that never blocks: it queues events in a
// bounded buffer for Run to deliver to the observer it wraps, and drops
// and counts them when the buffer is full (a stuck log sink). Dropped is
// reported in the table's Stats as events_dropped.
type EventBuffer struct {
	obs     Observer
	ch      chan event
	dropped atomic.Uint64
}

// NewEventBuffer wraps obs with a buffer of size events (0: the default).
func NewEventBuffer(obs Observer, size int) *EventBuffer {
	if size <= 0 {
		size = DefaultEventBuffer
	}
	return &EventBuffer{obs: obs, ch: make(chan event, size)}
}

// Run delivers the buffered events until ctx ends; an event whose
// delivery is under way then completes first.
func (b *EventBuffer) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-b.ch:
			e.deliver(b.obs)
		}
	}
}

// Dropped is the number of events dropped for a full buffer.
func (b *EventBuffer) Dropped() uint64 { return b.dropped.Load() }

// put queues e, unless the wrapped observer does not listen to its kind.
func (b *EventBuffer) put(e event) {
	if !hears(b.obs, e.kind) {
		return
	}
	select {
	case b.ch <- e:
	default:
		b.dropped.Add(1)
	}
}

// hears says whether o listens to events of kind k: the optional ones
// only when o implements their interface.
func hears(o Observer, k eventKind) bool {
	var ok bool
	switch k {
	case evDenied:
		_, ok = o.(PolicyObserver)
	case evEnded:
		_, ok = o.(EndObserver)
	case evConnOpened, evConnClosed, evRequested:
		_, ok = o.(DetailObserver)
	default:
		ok = true
	}
	return ok
}

func (b *EventBuffer) CallUp(c CallInfo) { b.put(event{kind: evUp, call: c}) }
func (b *EventBuffer) CallRefused(c CallInfo, reason string) {
	b.put(event{kind: evRefused, call: c, reason: reason})
}
func (b *EventBuffer) CallDown(c CallInfo, reason string) {
	b.put(event{kind: evDown, call: c, reason: reason})
}
func (b *EventBuffer) Malformed(c ConnInfo, reason string) {
	b.put(event{kind: evMalformed, conn: c, reason: reason})
}

// ControlDenied implements PolicyObserver, forwarded when the wrapped
// observer is one.
func (b *EventBuffer) ControlDenied(c ConnInfo, reason string) {
	b.put(event{kind: evDenied, conn: c, reason: reason})
}

// ConnOpened, ConnClosed and CallRequested implement DetailObserver,
// forwarded when the wrapped observer is one.
func (b *EventBuffer) ConnOpened(c ConnInfo) { b.put(event{kind: evConnOpened, conn: c}) }
func (b *EventBuffer) ConnClosed(c ConnInfo, reason string) {
	b.put(event{kind: evConnClosed, conn: c, reason: reason})
}
func (b *EventBuffer) CallRequested(c CallInfo) { b.put(event{kind: evRequested, call: c}) }

// eventsDropped is what the table's observer dropped, if it counts that.
func (t *Table) eventsDropped() uint64 {
	if d, ok := t.obs.(interface{ Dropped() uint64 }); ok {
		return d.Dropped()
	}
	return 0
}
