package conntrack

import (
	"sync/atomic"
	"time"
)

// TEMPORARY (deleted when the table split lands): fastpath.Source over
// the old FastPath hooks.

var tmpGen atomic.Uint64

func (t *Table) Desired(dst []GREMap) ([]GREMap, uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, c := range t.conns {
		for _, k := range c.calls {
			if fastEligible(k) && !(k.ppp.watch.Load() && t.needsPeek()) {
				dst = append(dst, k.greMap())
			}
		}
	}
	return dst, tmpGen.Add(1)
}

var tmpChanged = make(chan struct{}, 1)

func (t *Table) DesiredChanged() <-chan struct{} { return tmpChanged }

func (t *Table) FastPathCounters(m GREMap, in bool, packets, bytes uint64, last time.Time) {
	if last.IsZero() {
		last = time.Now()
	}
	t.KernelGRE(m, in, packets, bytes, last.UnixNano())
}
