package conntrack

import (
	"fmt"
	"maps"
)

// Sizes is what the table holds, for leak checks in tests.
type Sizes struct {
	Conns, ByOuter, ByOut, ByPublic, IdentIn, Buckets, PerIn int
	SegKeys                                                  int // connections found by other endpoints than their own
	Active, Pending, Unbound                                 int
	Calls                                                    int // calls listed by all connections
	Records                                                  int // rewrite records kept by all stream trackers
}

// Sizes returns the lengths of the table's internal maps and counts.
func (t *Table) Sizes() Sizes {
	t.mu.RLock()
	defer t.mu.RUnlock()
	x := &t.idx
	s := Sizes{Conns: x.conns.len(), ByOuter: x.byOuter.len(), ByOut: x.byOut.len(), ByPublic: x.byPublic.len(), IdentIn: x.identIn.len(),
		Buckets: len(x.buckets), PerIn: len(x.perIn), Active: x.active, Pending: x.pending,
		Unbound: x.unbound, SegKeys: len(x.segKeys)}
	for c := range x.conns.all {
		s.Calls += c.numCalls()
		s.Records += len(c.out.State().Records) + len(c.in.State().Records)
	}
	return s
}

// BucketUse returns how many outer IDs of peer's bucket hi are taken or reserved.
func (t *Table) BucketUse(peer Addr, hi byte) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int(t.idx.buckets[bucketKey{peer, hi}])
}

// CheckIndex recomputes every index and count from the connections' call
// lists and reports the first difference from what the index holds.
func (t *Table) CheckIndex() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	x := &t.idx
	buckets := map[bucketKey]uint16{}
	perIn := map[Addr]int32{}
	// byPublic and identIn keep one call per key (the last published; none
	// once that one goes, even if another with the key is still up): ICMP
	// errors of calls whose keys collide cannot be told apart.
	public, ident := map[outKey]bool{}, map[outKey]bool{}
	var nOuter, nOut, active, pending, unbound int
	for _, err := range []error{x.conns.check(), x.byOuter.check(), x.byOut.check(), x.identIn.check(), x.byPublic.check()} {
		if err != nil {
			return err
		}
	}
	for c := range x.conns.all {
		key := x.connKeyOf(c)
		if x.conns.get(key) != c || x.conn(key.a, key.b) != c {
			return fmt.Errorf("conn %v not found by its key", key)
		}
		for d, b := range c.resv {
			if b >= 0 {
				buckets[bucketKey{c.Outside.Addr, byte(b)}]++
			} else if b != -1 {
				return fmt.Errorf("conn %v: reservation %d of direction %d", key, b, d)
			}
		}
		for k := range c.eachCall {
			if k.conn != c {
				return fmt.Errorf("call %s listed by another connection", k.ID())
			}
			if got := x.outer(k.Peer, k.OuterID); k.inIndex() != (got == k) {
				return fmt.Errorf("call %s: inIndex %v, byOuter has %p", k.ID(), k.inIndex(), got)
			}
			if k.inIndex() {
				nOuter++
				buckets[bucketKey{k.Peer, byte(k.OuterID >> 8)}]++
			}
			if k.inOutIndex() {
				nOut++
				if x.out(k.Inside, k.Peer, k.PeerID) != k {
					return fmt.Errorf("call %s published but not in byOut", k.ID())
				}
				if k.identity() && k.hasInside() {
					ident[outKey{k.Inside, k.Peer, k.InsideID}] = true
				} else if !k.identity() {
					public[outKey{k.Public, k.Peer, k.PeerID}] = true
				}
			}
			switch k.State() {
			case StatePending:
				pending++
			case StateEstablished, StateClosing:
				active++
				perIn[k.Inside]++
			}
			if k.pickedUp() && !k.hasPeer() {
				unbound++
			}
		}
	}
	switch {
	case nOuter != x.byOuter.len():
		return fmt.Errorf("byOuter holds %d, calls say %d", x.byOuter.len(), nOuter)
	case nOut != x.byOut.len():
		return fmt.Errorf("byOut holds %d, calls say %d", x.byOut.len(), nOut)
	case x.byPublic.len() > len(public) || x.identIn.len() > len(ident):
		return fmt.Errorf("byPublic %d identIn %d, calls say %d %d", x.byPublic.len(), x.identIn.len(), len(public), len(ident))
	case active != x.active || pending != x.pending || unbound != x.unbound:
		return fmt.Errorf("counts %d/%d/%d, calls say %d/%d/%d", x.active, x.pending, x.unbound, active, pending, unbound)
	case !maps.Equal(buckets, x.buckets):
		return fmt.Errorf("buckets %v, calls say %v", x.buckets, buckets)
	case !maps.Equal(perIn, x.perIn):
		return fmt.Errorf("perIn %v, calls say %v", x.perIn, perIn)
	}
	for k := range x.byPublic.all {
		if key := x.byPublic.keyOf(k); !public[key] || !k.inOutIndex() || x.quoted(k.Public, k.Peer, k.PeerID) != k {
			return fmt.Errorf("byPublic %v: call %s not published under it", key, k.ID())
		}
	}
	for k := range x.identIn.all {
		if key := x.identIn.keyOf(k); !ident[key] || !k.inOutIndex() || x.identity(k.Peer, k.Inside, k.InsideID) != k {
			return fmt.Errorf("identIn %v: call %s not published under it", key, k.ID())
		}
	}
	return nil
}

// Len is how many events wait in the buffer.
func (b *EventBuffer) Len() int { return len(b.ch) }

// SetChangeLogLen gives the fast path's change log n entries, emptied
// (tests overrun it).
func (t *Table) SetChangeLogLen(n int) {
	t.log.mu.Lock()
	defer t.log.mu.Unlock()
	t.log.ring, t.log.n, t.log.lost = make([]changeEntry, n), 0, t.gen.Load()
}

// RareParts is how many connections hold their rare part (connRare).
func (t *Table) RareParts() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for c := range t.idx.conns.all {
		if c.rare != nil {
			n++
		}
	}
	return n
}
