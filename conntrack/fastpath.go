package conntrack

import "time"

// The kernel GRE fast path. The table publishes which calls' GRE the
// kernel may translate (Desired, with a generation that grows with every
// change of that set, DesiredChanges, what changed since a generation
// (changelog.go), and DesiredChanged) and takes back the counts the
// kernel kept (FastPathCounters): nat/fastpath.Source. A reconciler reads
// it from its own goroutine; nothing is called under the table's lock.

// GREMap is one call's GRE translation, both ways: inbound GRE from Peer
// carrying OuterID gets destination Inside and Call ID InsideID; outbound
// GRE from Inside to Peer carrying PeerID gets source Public.
type GREMap struct {
	Peer     Addr
	OuterID  uint16
	Public   Addr
	Inside   Addr
	InsideID uint16
	PeerID   uint16
}

func (k *Call) greMap() GREMap {
	return GREMap{Peer: k.Peer, OuterID: k.OuterID, Public: k.Public, Inside: k.Inside, InsideID: k.InsideID, PeerID: k.PeerID}
}

// fastEligible: a call up with both directions known and something to
// rewrite. The router's own calls stay on the queue path: their GRE is
// delivered to and sent by the router, which the kernel paths' forwarding
// chains do not see whole (no outbound prerouting), and their addresses
// need no rewriting.
func fastEligible(k *Call) bool {
	return !k.identity() && !k.conn.Local && k.inIndex() && k.inOutIndex() && k.hasInside() && k.hasPeer() &&
		(k.State() == StateEstablished || k.State() == StateClosing)
}

// needsPeek reports whether the policy in force reads the calls' PPP
// negotiation: then a call reaches the fast path only once that is over,
// since the kernel shows the gateway none of its packets.
func (t *Table) needsPeek() bool {
	p := t.policy.Load()
	return p != nil && (len(p.Auth) > 0 || p.MinMPPE > 0)
}

// fastNow: k may be translated by the kernel now.
func (t *Table) fastNow(k *Call) bool {
	return fastEligible(k) && !(k.ppp.watching() && t.needsPeek())
}

// bump records a change of the set Desired returns that the change log
// (changelog.go) does not name call by call: the readers read Desired
// whole. It takes no lock of the table's.
func (t *Table) bump() {
	t.log.mu.Lock()
	t.log.lost = t.gen.Add(1)
	t.log.mu.Unlock()
	t.signal()
}

// signal tells DesiredChanged's subscribers that the generation grew.
func (t *Table) signal() {
	if subs := t.changed.Load(); subs != nil {
		for _, ch := range *subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// Desired appends to dst the mappings of every call the kernel may
// translate now and returns them with their generation.
func (t *Table) Desired(dst []GREMap) ([]GREMap, uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// Read before the calls: a negotiation ending meanwhile (no lock)
	// bumps after this, so the reconciler comes back for it.
	gen := t.gen.Load()
	for c := range t.idx.conns.all {
		for k := range c.eachCall {
			if t.fastNow(k) {
				dst = append(dst, k.greMap())
			}
		}
	}
	return dst, gen
}

// Generation is the generation Desired would return now.
func (t *Table) Generation() uint64 { return t.gen.Load() }

// DesiredChanged returns a channel of the caller's own, signalled
// (capacity 1, never closed) after the generation grew: each fast path
// tier hears every change.
func (t *Table) DesiredChanged() <-chan struct{} {
	ch := make(chan struct{}, 1)
	t.subMu.Lock()
	defer t.subMu.Unlock()
	var subs []chan struct{}
	if old := t.changed.Load(); old != nil {
		subs = append(subs, *old...)
	}
	subs = append(subs, ch)
	t.changed.Store(&subs) // copy on write: signal reads it without a lock
	t.log.mu.Lock()
	if t.log.ring == nil { // a reader: the log is worth keeping from now on
		t.log.ring = make([]changeEntry, changeLogLen)
	}
	t.log.mu.Unlock()
	return ch
}

// FastPathCounters adds packets and bytes the kernel translated for the
// call of m (in: towards the inside end). last, when not zero, is when it
// last did; else, with packets, the call was seen now. A call no longer
// in the table is ignored.
func (t *Table) FastPathCounters(m GREMap, in bool, packets, bytes uint64, last time.Time) {
	var seen int64
	if !last.IsZero() {
		seen = last.UnixNano()
	} else if packets > 0 {
		t.mu.RLock()
		clock := t.clock
		t.mu.RUnlock()
		seen = clock()
	}
	t.kernelCounters(m, in, packets, bytes, seen)
}

// kernelCounters adds counts to m's call and moves its last-seen time
// forward to seen (0: unknown).
func (t *Table) kernelCounters(m GREMap, in bool, packets, bytes uint64, seen int64) {
	if packets == 0 && seen == 0 {
		return
	}
	t.mu.RLock()
	var k *Call
	if in {
		k = t.idx.outer(m.Peer, m.OuterID)
	} else {
		k = t.idx.out(m.Inside, m.Peer, m.PeerID)
	}
	t.mu.RUnlock()
	if k == nil {
		return
	}
	if seen > k.lastSeen.Load() {
		k.lastSeen.Store(seen)
	}
	if in {
		k.pktsIn.Add(packets)
		k.bytesIn.Add(bytes)
	} else {
		k.pktsOut.Add(packets)
		k.bytesOut.Add(bytes)
	}
}
