package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// interfaceBackend is a fast path that sits on interfaces (bpf): it must
// be told which ones PPTP traffic uses. SetInterfaces converges its
// attachments to exactly that set; it may be called concurrently with the
// Backend methods.
type interfaceBackend interface {
	SetInterfaces(ifindexes []int) error
	// Interfaces are those it is attached to now (an earlier run's,
	// kept across the restart).
	Interfaces() []int
}

// ifaceSet learns the interfaces PPTP uses from the input and output
// devices of queued control segments (the rules are address-free, so
// this is how the gateway finds its inside and outside interfaces), plus
// a fixed list (--bpf-interfaces). The packet path only reads an atomic
// snapshot; a new interface is added on the side.
type ifaceSet struct {
	be    interfaceBackend
	log   *zap.Logger
	fixed bool
	known atomic.Pointer[[]int]
	mu    sync.Mutex // serialises additions and SetInterfaces
	// lastErr is the last SetInterfaces error, logged once.
	lastErr string
}

// attach starts telling be: a fixed list at once; else what an earlier
// run attached stays, and learning adds to it.
func (s *ifaceSet) attach(be interfaceBackend, log *zap.Logger) {
	s.be, s.log = be, log
	if !s.fixed {
		kept := slices.Clone(be.Interfaces())
		slices.Sort(kept)
		s.known.Store(&kept)
	}
	s.apply(*s.known.Load())
}

// setFixed replaces learning with a fixed list.
func (s *ifaceSet) setFixed(ifindexes []int) {
	s.fixed = true
	l := slices.Clone(ifindexes)
	s.known.Store(&l)
}

// learn notes the devices of a control segment (0: none).
func (s *ifaceSet) learn(in, out uint32) {
	if s.be == nil || s.fixed {
		return
	}
	k := s.known.Load()
	if (in == 0 || slices.Contains(*k, int(in))) && (out == 0 || slices.Contains(*k, int(out))) {
		return
	}
	go s.add(int(in), int(out))
}

func (s *ifaceSet) add(idx ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := slices.Clone(*s.known.Load())
	for _, i := range idx {
		if i != 0 && !slices.Contains(next, i) {
			next = append(next, i)
		}
	}
	if len(next) == len(*s.known.Load()) {
		return
	}
	slices.Sort(next)
	s.known.Store(&next)
	s.apply(next)
}

func (s *ifaceSet) apply(ifindexes []int) {
	before := s.be.Interfaces()
	err := s.be.SetInterfaces(ifindexes)
	if err != nil && err.Error() != s.lastErr {
		s.log.Warn("attach the GRE fast path", zap.Ints("ifindexes", ifindexes), zap.Error(err))
	}
	s.lastErr = ""
	if err != nil {
		s.lastErr = err.Error()
	}
	if after := s.be.Interfaces(); !slices.Equal(before, after) {
		s.log.Info("GRE fast path attached", zap.Ints("ifindexes", ifindexes), zap.Ints("attached", after))
	}
}

// interfaceResync is how often the attachments are converged again.
const interfaceResync = 10 * time.Second

// resync converges the attachments again (every interfaceResync): a
// bridge's ports and MAC change, an interface comes back with a new
// ifindex.
func (s *ifaceSet) resync(time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply(*s.known.Load())
}

// list returns the interfaces known now.
func (s *ifaceSet) list() []int {
	if k := s.known.Load(); k != nil {
		return *k
	}
	return nil
}
