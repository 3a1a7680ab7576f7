package fastpath

import (
	"unsafe"

	"github.com/pptpgw/pptpgw/conntrack"
)

var ConvergeGap = convergeGap

// MirrorBytes is what a mapping held by tiers tiers costs in the mirror
// (and as much per slot of its spare capacity).
func MirrorBytes(tiers int) uintptr {
	return unsafe.Sizeof(conntrack.GREMap{}) + unsafe.Sizeof(uint8(0)) + uintptr(tiers)*unsafe.Sizeof(counts{})
}

// Moved keeps c1 as a mapping's last read, then returns what moved to c2
// (the mirror's arithmetic on the low bits it keeps).
func Moved(c1, c2 Counters) (pkts, byts uint64) {
	var a counts
	a.keep(dirIn, c1)
	return a.moved(dirIn, c2)
}

func (r *Reconciler) CounterTicks() int { return r.counterTicks() }

// Held is the number of mappings the mirror keeps (for every tier).
func (s *Mirror) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.maps)
}

// Column says how the mirror keeps tier t's counters: a dense column, or
// sparse entries (how many).
func (s *Mirror) Column(t int) (dense bool, sparse int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[t] != nil, len(s.sparse[t])
}
