package conntrack

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"
)

// The fast path's change log: which mapping keys (peer, public address,
// outer Call ID) changed at which generation of the desired state, so
// that a reconciler converges in the time of what changed rather than of
// every call (DesiredChanges). It is bounded: a reader left behind by more
// than its length, or by a change the log does not name call by call
// (bump: a policy, a restore, a replica), reads Desired whole.

// changeLogLen is the log's length: at 2 700 call setups a second, over
// a second of changes (24 bytes each, 96 kB).
const changeLogLen = 4096

// greKey is a mapping's key, the inbound GRE's own fields.
type greKey struct {
	peer, public Addr
	outer        uint16
}

type changeEntry struct {
	gen uint64 // the generation the key last changed at
	key greKey
}

// changeLog has its own mutex, not Table.mu: the packet path records a
// watched call's negotiation ending without the table's lock.
type changeLog struct {
	mu   sync.Mutex
	ring []changeEntry // nil until a reader subscribes (DesiredChanged)
	n    uint64        // entries ever appended: ring[n%len(ring)] is the next slot
	// lost: a reader at a generation below it must read Desired whole
	// (an entry it needs was overwritten, or never written).
	lost uint64
}

// record appends key at generation gen (log.mu held). A key changing
// again at once (set up, then its negotiation ending) takes the newest
// entry over.
func (l *changeLog) record(gen uint64, key greKey) {
	if l.ring == nil {
		l.lost = gen
		return
	}
	size := uint64(len(l.ring))
	if l.n > 0 {
		if last := &l.ring[(l.n-1)%size]; last.key == key {
			last.gen = gen
			return
		}
	}
	e := &l.ring[l.n%size]
	if l.n >= size {
		l.lost = max(l.lost, e.gen) // not below a bump's
	}
	*e = changeEntry{gen: gen, key: key}
	l.n++
}

// since appends to dst the keys changed after generation gen, newest
// first, and reports whether the log still holds all of them (log.mu
// held).
func (l *changeLog) since(gen uint64, dst []GREChange) ([]GREChange, bool) {
	if l.ring == nil || gen < l.lost {
		return dst, false
	}
	size := uint64(len(l.ring))
	for i := l.n; i > 0 && i+size > l.n; i-- {
		e := &l.ring[(i-1)%size]
		if e.gen <= gen {
			break
		}
		dst = append(dst, GREChange{Map: GREMap{Peer: e.key.peer, Public: e.key.public, OuterID: e.key.outer}})
	}
	return dst, true
}

// GREChange is a mapping key that changed, with what the kernel may hold
// for it now: Map when Live, else nothing (Map then holds only the key:
// Peer, Public, OuterID).
type GREChange struct {
	Map  GREMap
	Live bool
}

func (k *Call) greKey() greKey { return greKey{peer: k.Peer, public: k.Public, outer: k.OuterID} }

// bumpCalls records that the mappings of k and of other (nil: none) may
// have changed: entered, left or changed value. t.mu is held, or this is
// the packet path ending a watch: the keys do not change once a call is
// published.
func (t *Table) bumpCalls(k, other *Call) {
	t.log.mu.Lock()
	gen := t.gen.Add(1)
	t.log.record(gen, k.greKey())
	if other != nil {
		t.log.record(gen, other.greKey())
	}
	t.log.mu.Unlock()
	t.signal()
}

// DesiredChanges appends to dst the mapping keys whose mapping may have
// changed after generation since, each once, with the mapping the kernel
// may translate now, and returns them with the generation they bring the
// caller to. ok false: the log cannot tell (the caller fell behind it, or
// a change of many calls at once): read Desired whole.
func (t *Table) DesiredChanges(since uint64, dst []GREChange) (_ []GREChange, gen uint64, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	start := len(dst)
	t.log.mu.Lock()
	// Read with the log: every change up to gen is in it, and (made
	// before its generation grew) seen by the lookups below.
	gen = t.gen.Load()
	dst, ok = t.log.since(since, dst)
	t.log.mu.Unlock()
	if !ok {
		return dst[:start], gen, false
	}
	ch := dst[start:]
	slices.SortFunc(ch, func(a, b GREChange) int { return cmpKey(&a.Map, &b.Map) })
	ch = slices.CompactFunc(ch, func(a, b GREChange) bool { return cmpKey(&a.Map, &b.Map) == 0 })
	for i := range ch {
		m := &ch[i].Map
		if k := t.idx.outer(m.Peer, m.OuterID); k != nil && k.Public == m.Public && t.fastNow(k) {
			ch[i] = GREChange{Map: k.greMap(), Live: true}
		}
	}
	return dst[:start+len(ch)], gen, true
}

func cmpKey(a, b *GREMap) int {
	if c := cmp.Compare(binary.BigEndian.Uint32(a.Peer[:]), binary.BigEndian.Uint32(b.Peer[:])); c != 0 {
		return c
	}
	if c := cmp.Compare(a.OuterID, b.OuterID); c != 0 {
		return c
	}
	return cmp.Compare(binary.BigEndian.Uint32(a.Public[:]), binary.BigEndian.Uint32(b.Public[:]))
}
