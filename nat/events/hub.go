package events

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// DefaultBuffer is the events a subscriber's buffer holds: a burst of
// teardowns (a peer's control connection dropping with its calls) fits.
const DefaultBuffer = 1024

// Hub fans events out to its subscribers. Publish and the observer
// methods never block and may be called from any goroutine: the table
// calls them after its lock, on the goroutine that caused the event (a
// packet worker, the expiry loop), the fast paths from their reconcilers.
type Hub struct {
	mu   sync.RWMutex
	subs map[*Sub]struct{}
	n    atomic.Int32  // len(subs), read without the lock
	lost atomic.Uint64 // events lost by every subscriber since start
	now  func() time.Time
}

// NewHub returns a hub without subscribers.
func NewHub() *Hub { return &Hub{subs: map[*Sub]struct{}{}, now: time.Now} }

// SetClock replaces the clock that stamps events (tests).
func (h *Hub) SetClock(now func() time.Time) { h.now = now }

// Subscribers is how many subscribers there are now.
func (h *Hub) Subscribers() int { return int(h.n.Load()) }

// LostTotal is how many events subscribers lost, in all.
func (h *Hub) LostTotal() uint64 { return h.lost.Load() }

// Subscribe starts a subscription to the events f matches, with a buffer
// of size events (at least 2; 0: DefaultBuffer). Close it when done.
func (h *Hub) Subscribe(f Filter, size int) *Sub {
	if size <= 0 {
		size = DefaultBuffer
	}
	s := &Sub{hub: h, f: f, ch: make(chan Event, max(size, 2)), poke: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.n.Store(int32(len(h.subs)))
	h.mu.Unlock()
	return s
}

// Publish hands e to every subscriber it matches, stamped with the time
// unless it has one.
func (h *Hub) Publish(e Event) {
	if h.n.Load() == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = h.now()
	}
	h.mu.RLock()
	for s := range h.subs {
		if s.f.Match(&e) {
			s.offer(&e)
		}
	}
	h.mu.RUnlock()
}

// Sub is one subscription. Next is for one goroutine.
type Sub struct {
	hub  *Hub
	f    Filter
	ch   chan Event
	poke chan struct{} // a loss happened: Next reports it even if nothing follows

	mu   sync.Mutex // orders offers with takeLost
	lost uint64     // lost since the last Lost event, not yet reported
}

// offer queues e without blocking. Once events were lost, a Lost event
// goes first, when there is room for it and e: the reader learns where
// the gap is.
func (s *Sub) offer(e *Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost > 0 {
		if cap(s.ch)-len(s.ch) < 2 {
			s.drop()
			return
		}
		s.ch <- Event{Type: Lost, Time: e.Time, Count: s.lost}
		s.lost = 0
	}
	select {
	case s.ch <- *e:
	default:
		s.drop()
	}
}

func (s *Sub) drop() {
	s.lost++
	s.hub.lost.Add(1)
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// takeLost returns the losses not yet reported once the buffer is empty
// (so that the Lost event comes after what was queued before it).
func (s *Sub) takeLost() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ch) > 0 {
		return 0
	}
	n := s.lost
	s.lost = 0
	return n
}

// Next returns the next event, a Lost event where events were lost, or
// false once done is closed.
func (s *Sub) Next(done <-chan struct{}) (Event, bool) {
	for {
		select {
		case e := <-s.ch:
			return e, true
		default:
		}
		if n := s.takeLost(); n > 0 {
			return Event{Type: Lost, Time: s.hub.now(), Count: n}, true
		}
		select {
		case e := <-s.ch:
			return e, true
		case <-s.poke:
		case <-done:
			return Event{}, false
		}
	}
}

// Pending is how many events wait in the buffer.
func (s *Sub) Pending() int { return len(s.ch) }

// Close ends the subscription.
func (s *Sub) Close() {
	h := s.hub
	h.mu.Lock()
	delete(h.subs, s)
	h.n.Store(int32(len(h.subs)))
	h.mu.Unlock()
}

// The hub as the call table's observer (conntrack.Observer,
// PolicyObserver, DetailObserver) and the fast paths' OnMapping.

func (h *Hub) call(t Type, c conntrack.CallInfo, reason string) {
	if h.n.Load() == 0 {
		return
	}
	h.Publish(Event{Type: t, Call: c, HasCall: true, Conn: c.Conn, Reason: reason})
}

func (h *Hub) conn(t Type, c conntrack.ConnInfo, reason string) {
	if h.n.Load() == 0 {
		return
	}
	h.Publish(Event{Type: t, Conn: c, Reason: reason})
}

func (h *Hub) CallUp(c conntrack.CallInfo)                  { h.call(CallUp, c, "") }
func (h *Hub) CallDown(c conntrack.CallInfo, reason string) { h.call(CallDown, c, reason) }

// CallRefused is a refusal, or a call cleared while up: by the policy or
// by an admin's DELETE.
func (h *Hub) CallRefused(c conntrack.CallInfo, reason string) {
	t := CallRefused
	if strings.HasPrefix(reason, "policy-") || reason == "deleted" {
		t = CallCleared
	}
	h.call(t, c, reason)
}
func (h *Hub) CallRequested(c conntrack.CallInfo)                { h.call(CallRequest, c, "") }
func (h *Hub) Malformed(c conntrack.ConnInfo, reason string)     { h.conn(Malformed, c, reason) }
func (h *Hub) ControlDenied(c conntrack.ConnInfo, reason string) { h.conn(ConnDenied, c, reason) }
func (h *Hub) ConnOpened(c conntrack.ConnInfo)                   { h.conn(ConnOpen, c, "") }
func (h *Hub) ConnClosed(c conntrack.ConnInfo, reason string)    { h.conn(ConnClose, c, reason) }

// Mapping returns the fastpath.Config.OnMapping of the fast path named
// path: each mapping entering or leaving the kernel is an event of its
// call (addresses and IDs only).
func (h *Hub) Mapping(path string) func(m conntrack.GREMap, entered bool) {
	return func(m conntrack.GREMap, entered bool) {
		if h.n.Load() == 0 {
			return
		}
		t := FastLeave
		if entered {
			t = FastEnter
		}
		c := conntrack.CallInfo{State: conntrack.StateEstablished, Inside: m.Inside, InsideID: m.InsideID, HasInside: true,
			Public: m.Public, OuterID: m.OuterID, Peer: m.Peer, PeerID: m.PeerID, HasPeer: true}
		h.Publish(Event{Type: t, Call: c, HasCall: true, Path: path})
	}
}

var (
	_ conntrack.Observer       = (*Hub)(nil)
	_ conntrack.PolicyObserver = (*Hub)(nil)
	_ conntrack.DetailObserver = (*Hub)(nil)
)
