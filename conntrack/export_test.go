package conntrack

// Sizes is what the table holds, for leak checks in tests.
type Sizes struct {
	Conns, ByOuter, ByOut, ByPublic, IdentIn, Buckets, PerIn int
	Active, Pending, Unbound                                 int
	Calls                                                    int // calls listed by all connections
	Records                                                  int // rewrite records kept by all stream trackers
}

// Sizes returns the lengths of the table's internal maps and counts.
func (t *Table) Sizes() Sizes {
	t.mu.RLock()
	defer t.mu.RUnlock()
	x := &t.idx
	s := Sizes{Conns: len(x.conns), ByOuter: len(x.byOuter), ByOut: x.byOut.calls(), ByPublic: len(x.byPublic), IdentIn: len(x.identIn),
		Buckets: len(x.buckets), PerIn: len(x.perIn), Active: x.active, Pending: x.pending,
		Unbound: x.unbound}
	for _, c := range x.conns {
		s.Calls += len(c.calls)
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
