// Package fastpathtest is a fastpath.Source of fixed calls, for tests of
// backends and of the reconciler without a call table.
package fastpathtest

import (
	"sync"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// Source holds the desired mappings a test sets and the counters the
// reconciler credits.
type Source struct {
	mu   sync.Mutex
	maps []conntrack.GREMap
	gen  uint64
	subs []chan struct{}
	got  map[Dir]Credit
}

// Dir is a direction of one call's GRE.
type Dir struct {
	Call conntrack.GREMap
	In   bool
}

// Credit is what the reconciler gave one direction of one call.
type Credit struct {
	Packets, Bytes uint64
	Last           time.Time
}

// New returns a Source desiring maps.
func New(maps ...conntrack.GREMap) *Source {
	return &Source{maps: maps, gen: 1, got: map[Dir]Credit{}}
}

// Set replaces the desired mappings.
func (s *Source) Set(maps ...conntrack.GREMap) {
	s.mu.Lock()
	s.maps = append([]conntrack.GREMap(nil), maps...)
	s.gen++
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// Desired implements fastpath.Source.
func (s *Source) Desired(dst []conntrack.GREMap) ([]conntrack.GREMap, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(dst, s.maps...), s.gen
}

// DesiredChanged implements fastpath.Source.
func (s *Source) DesiredChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{}, 1)
	s.subs = append(s.subs, ch)
	return ch
}

// FastPathCounters implements fastpath.Source.
func (s *Source) FastPathCounters(m conntrack.GREMap, in bool, packets, bytes uint64, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.got[Dir{m, in}]
	c.Packets += packets
	c.Bytes += bytes
	if last.After(c.Last) {
		c.Last = last
	}
	s.got[Dir{m, in}] = c
}

// Credited returns what one direction of m was given so far.
func (s *Source) Credited(m conntrack.GREMap, in bool) Credit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[Dir{m, in}]
}
