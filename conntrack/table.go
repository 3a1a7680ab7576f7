package conntrack

import (
	"sync"
	"sync/atomic"
	"time"
)

// Table is the gateway's call table.
type Table struct {
	mu     sync.RWMutex
	limits Limits
	idx    index // index.go: every lookup structure and count
	// events.go: the observer (nil: none) and the events collected under
	// the lock for it; obsEnd: it is an EndObserver.
	obs      Observer
	obsEnd   bool
	evs      []event
	clock    func() int64
	connSeq  uint64 // numbers connections (ConnInfo.Serial)
	Counters Counters
	// policy.go: the policy in force and its counters.
	policy         atomic.Pointer[Policy]
	policyCleared  atomic.Uint64
	controlDeniedN atomic.Uint64
	// fastpath.go: the generation of the set of calls the kernel may
	// translate, the change log of it (changelog.go), and its signal.
	gen     atomic.Uint64
	log     changeLog
	changed atomic.Pointer[[]chan struct{}] // DesiredChanged's subscribers
	subMu   sync.Mutex                      // serialises subscriptions

	// obsDetail: the observer is a DetailObserver (events.go).
	obsDetail bool
	repl      tableReplica // replica.go: replication's change tracking
	h         handler      // control.go: the handler of the segment being walked (t.mu held)
	// state.go: the generation of what the state file must keep, and its
	// signal; stateSeen is idx.changes when it last grew.
	stateGen     atomic.Uint64
	stateSeen    uint64
	stateChanged chan struct{}
}

// New returns an empty table. obs (nil: none) hears its events after the
// lock is released; wrap a slow one in an EventBuffer.
func New(l Limits, obs Observer) *Table {
	if _, nop := obs.(NopObserver); nop {
		obs = nil
	}
	_, end := obs.(EndObserver)
	_, detail := obs.(DetailObserver)
	t := &Table{
		limits: l.withDefaults(),
		idx:    newIndex(),
		obs:    obs,
		obsEnd: end,
		clock:  func() int64 { return time.Now().UnixNano() },

		stateChanged: make(chan struct{}, 1),
	}
	t.obsDetail = detail
	return t
}

// SetClock replaces the clock the table reads where its caller gives no
// time (FastPathCounters without a last-seen time); tests inject one.
func (t *Table) SetClock(now func() int64) {
	t.mu.Lock()
	t.clock = now
	t.mu.Unlock()
}

// SetLimits changes limits and timeouts (SIGHUP); existing calls stay.
func (t *Table) SetLimits(l Limits) {
	t.mu.Lock()
	t.limits = l.withDefaults()
	t.mu.Unlock()
}

// Limits returns the limits in force.
func (t *Table) Limits() Limits {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.limits
}

// GREVerdict is what the table says about a GRE packet.
type GREVerdict uint8

const (
	GREUnknown  GREVerdict = iota // no call: drop
	GREForward                    // a call: rewrite as returned
	GRERefused                    // a tombstone: drop
	GREIdentity                   // a call the kernel does not NAT: pass untouched
)

// GREIn looks up GRE from peer to dst (a public address) carrying Call ID
// outer. On GREForward it returns the inside address and Call ID to write.
func (t *Table) GREIn(peer, dst Addr, outer uint16, n int, now int64) (Addr, uint16, GREVerdict) {
	inside, id, v, _ := t.greIn(peer, dst, outer, n, now)
	return inside, id, v
}

// greIn is GREIn that also returns the call found (GREForward).
func (t *Table) greIn(peer, dst Addr, outer uint16, n int, now int64) (Addr, uint16, GREVerdict, *Call) {
	t.mu.RLock()
	c := t.idx.outer(peer, outer)
	if c == nil || c.Public != dst {
		t.mu.RUnlock()
		return Addr{}, 0, GREUnknown, nil
	}
	// hasInside is read under the lock too: it shares its byte with
	// flags the write lock's holders change.
	inside, id, st, hasInside := c.Inside, c.InsideID, c.State(), c.hasInside()
	t.mu.RUnlock()
	if st == StateRefused || st == StatePending || !hasInside {
		return Addr{}, 0, GRERefused, nil
	}
	c.seen(now)
	c.pktsIn.Add(1)
	c.bytesIn.Add(uint64(n))
	return inside, id, GREForward, c
}

// GREOut looks up forwarded GRE from src to peer carrying the peer's Call
// ID. On GREForward it returns the public address to write as source.
// Forwarded GRE of an untranslated call passes either way (GREIdentity).
func (t *Table) GREOut(src, peer Addr, peerID uint16, n int, now int64) (Addr, GREVerdict) {
	public, v, _ := t.greOut(src, peer, peerID, n, now)
	return public, v
}

// greOut is GREOut that also returns the call found (GREForward, GREIdentity).
func (t *Table) greOut(src, peer Addr, peerID uint16, n int, now int64) (Addr, GREVerdict, *Call) {
	t.mu.RLock()
	c := t.idx.out(src, peer, peerID)
	unbound := t.idx.unbound
	if c == nil {
		if k := t.idx.identity(src, peer, peerID); k != nil {
			t.mu.RUnlock()
			k.seen(now)
			k.pktsIn.Add(1)
			k.bytesIn.Add(uint64(n))
			return Addr{}, GREIdentity, k
		}
		t.mu.RUnlock()
		if unbound == 0 {
			return Addr{}, GREUnknown, nil
		}
		if c = t.bindPickedUp(src, peer, peerID); c == nil {
			return Addr{}, GREUnknown, nil
		}
		t.mu.RLock()
	}
	public, st, ident := c.Public, c.State(), c.identity()
	t.mu.RUnlock()
	if st == StateRefused || st == StatePending {
		return Addr{}, GRERefused, nil
	}
	c.seen(now)
	c.pktsOut.Add(1)
	c.bytesOut.Add(uint64(n))
	if ident {
		return public, GREIdentity, c
	}
	return public, GREForward, c
}

// Counters are the table's event counts since start.
type Counters struct {
	ControlMessages atomic.Uint64
	Rewrites        atomic.Uint64
	Malformed       atomic.Uint64
	CallsSetUp      atomic.Uint64
	CallsPickedUp   atomic.Uint64
	CallsEnded      atomic.Uint64
	CallsRefused    atomic.Uint64
	CallsFailed     atomic.Uint64 // replies with a result other than 1
	IDsExhausted    atomic.Uint64
	OutOfOrder      atomic.Uint64
	Retransmissions atomic.Uint64
	// Strays: SYN, RST and FIN segments out of place on a live
	// connection (control.go), passed and otherwise ignored.
	Strays      atomic.Uint64
	ConnsOpened atomic.Uint64
	ConnsClosed atomic.Uint64
}

// Stats returns the counters and gauges as a flat map (DESIGN.md stats).
func (t *Table) Stats() map[string]uint64 {
	t.mu.RLock()
	active, pending, conns := t.idx.active, t.idx.pending, t.idx.conns.len()
	t.mu.RUnlock()
	k := &t.Counters
	m := map[string]uint64{
		"control_messages":     k.ControlMessages.Load(),
		"rewrites":             k.Rewrites.Load(),
		"malformed":            k.Malformed.Load(),
		"calls_set_up":         k.CallsSetUp.Load(),
		"calls_picked_up":      k.CallsPickedUp.Load(),
		"calls_ended":          k.CallsEnded.Load(),
		"calls_refused":        k.CallsRefused.Load(),
		"calls_failed":         k.CallsFailed.Load(),
		"call_ids_exhausted":   k.IDsExhausted.Load(),
		"control_out_of_order": k.OutOfOrder.Load(),
		"control_retransmits":  k.Retransmissions.Load(),
		"control_stray":        k.Strays.Load(),
		"control_conns_opened": k.ConnsOpened.Load(),
		"control_conns_closed": k.ConnsClosed.Load(),
		"calls_active":         uint64(active),
		"calls_pending":        uint64(pending),
		"control_conns_active": uint64(conns),
		"events_dropped":       t.eventsDropped(),
	}
	t.addPolicyStats(m)
	return m
}

// seenGrain is how fresh a call's last-seen time is kept by its GRE: a
// store per packet would be a locked instruction per packet for nothing
// (the idle timeouts count in minutes).
const seenGrain = int64(time.Millisecond)

// seen records GRE of the call at now.
func (c *Call) seen(now int64) {
	if now-c.lastSeen.Load() >= seenGrain {
		c.lastSeen.Store(now)
	}
}
