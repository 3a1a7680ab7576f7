package events_test

import (
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/events"
)

func addr(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

// callOf is a call of inside address in to peer with outer ID outer.
func callOf(in, peer string, outer uint16) conntrack.CallInfo {
	return conntrack.CallInfo{Inside: addr(in), InsideID: outer, HasInside: true, Public: addr("203.0.113.1"),
		OuterID: outer, Peer: addr(peer), PeerID: 7, HasPeer: true, Created: time.Unix(100, 0).UnixNano()}
}

// next reads one event or fails after a while.
func next(t *testing.T, s *events.Sub) events.Event {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() { close(done) })
	defer timer.Stop()
	e, ok := s.Next(done)
	if !ok {
		t.Fatal("no event within 5s")
	}
	return e
}

// TestSlowAndFast: with one reader stuck, publishing goes on at full
// speed; the fast reader gets every event in order, the stuck one keeps
// what its buffer held, then a Lost event saying how many it lost, then
// the events published after it caught up.
func TestSlowAndFast(t *testing.T) {
	h := events.NewHub()
	slow := h.Subscribe(events.Filter{}, 4)
	defer slow.Close()
	fast := h.Subscribe(events.Filter{}, 0)
	defer fast.Close()
	const n = 100
	var got []uint16
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			got = append(got, next(t, fast).Call.OuterID)
		}
	}()
	start := time.Now()
	for i := range n {
		h.CallUp(callOf("192.168.1.10", "198.51.100.10", uint16(i)))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("publishing %d events took %v with a stuck reader", n, d)
	}
	wg.Wait()
	if want := seq(0, n); !slices.Equal(got, want) {
		t.Errorf("fast reader got %v", got)
	}
	for i := range 4 {
		if e := next(t, slow); e.Type != events.CallUp || e.Call.OuterID != uint16(i) {
			t.Errorf("slow reader event %d: %s %d", i, e.Type, e.Call.OuterID)
		}
	}
	if e := next(t, slow); e.Type != events.Lost || e.Count != n-4 {
		t.Errorf("slow reader after its buffer: %s count %d, want lost %d", e.Type, e.Count, n-4)
	}
	if h.LostTotal() != n-4 {
		t.Errorf("LostTotal %d, want %d", h.LostTotal(), n-4)
	}
	h.CallDown(callOf("192.168.1.10", "198.51.100.10", 500), "cdn")
	if e := next(t, slow); e.Type != events.CallDown || e.Reason != "cdn" {
		t.Errorf("slow reader after catching up: %s %q", e.Type, e.Reason)
	}
}

// TestLostInPlace: losses are announced where they happened: after the
// events buffered before them and before those that found room after.
func TestLostInPlace(t *testing.T) {
	h := events.NewHub()
	s := h.Subscribe(events.Filter{}, 3)
	defer s.Close()
	for i := range 5 { // 0,1,2 buffered; 3,4 lost
		h.CallUp(callOf("192.168.1.10", "198.51.100.10", uint16(i)))
	}
	if e := next(t, s); e.Call.OuterID != 0 {
		t.Fatalf("first event %d", e.Call.OuterID)
	}
	// One slot free: not room for the Lost event and 5, so 5 is lost too.
	h.CallUp(callOf("192.168.1.10", "198.51.100.10", 5))
	next(t, s) // 1
	// Two free: Lost (3) then 6.
	h.CallUp(callOf("192.168.1.10", "198.51.100.10", 6))
	var seen []string
	for range 3 {
		e := next(t, s)
		seen = append(seen, string(e.Type)+"/"+itoa(e.Call.OuterID, e.Count))
	}
	if want := []string{"call-up/2", "lost/3", "call-up/6"}; !slices.Equal(seen, want) {
		t.Errorf("stream %v, want %v", seen, want)
	}
}

// TestLostAtTheEnd: a loss with nothing published after it is still
// announced once the reader has drained its buffer.
func TestLostAtTheEnd(t *testing.T) {
	h := events.NewHub()
	s := h.Subscribe(events.Filter{}, 2)
	defer s.Close()
	for i := range 5 {
		h.ConnOpened(conntrack.ConnInfo{Serial: uint64(i)})
	}
	next(t, s)
	next(t, s)
	if e := next(t, s); e.Type != events.Lost || e.Count != 3 {
		t.Errorf("after the buffer: %s %d, want lost 3", e.Type, e.Count)
	}
}

func itoa(id uint16, count uint64) string {
	if count > 0 {
		return string(rune('0' + count))
	}
	return string(rune('0' + id))
}

func seq(from, to int) []uint16 {
	var s []uint16
	for i := from; i < to; i++ {
		s = append(s, uint16(i))
	}
	return s
}

// TestFilters: inside and peer CIDRs and types (and type groups) are
// evaluated per subscriber; each gets only what it asked for.
func TestFilters(t *testing.T) {
	h := events.NewHub()
	parse := func(q string) events.Filter {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		f, err := events.ParseQuery(v)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return f
	}
	subs := map[string]*events.Sub{}
	for _, q := range []string{"", "inside=192.168.1.0/24", "peer=198.51.100.20", "type=call-down,conn",
		"type=fast&inside=192.168.2.5", "type=call-cleared"} {
		subs[q] = h.Subscribe(parse(q), 64)
	}
	a := callOf("192.168.1.10", "198.51.100.10", 1)
	b := callOf("192.168.2.5", "198.51.100.20", 2)
	h.ConnOpened(conntrack.ConnInfo{Inside: conntrack.Endpoint{Addr: addr("192.168.1.10"), Port: 40000},
		Outside: conntrack.Endpoint{Addr: addr("198.51.100.10"), Port: 1723}})
	h.CallUp(a)
	h.CallUp(b)
	h.Mapping("kernel")(conntrack.GREMap{Peer: b.Peer, OuterID: 2, Public: b.Public, Inside: b.Inside, InsideID: 2, PeerID: 7}, true)
	h.CallRefused(b, conntrack.ReasonPolicyMPPE)
	h.CallRefused(a, "max-calls-per-inside")
	h.CallDown(a, "cdn")
	want := map[string][]string{
		"":                             {"conn-open", "call-up 1", "call-up 2", "fast-enter 2", "call-cleared 2", "call-refused 1", "call-down 1"},
		"inside=192.168.1.0/24":        {"conn-open", "call-up 1", "call-refused 1", "call-down 1"},
		"peer=198.51.100.20":           {"call-up 2", "fast-enter 2", "call-cleared 2"},
		"type=call-down,conn":          {"conn-open", "call-down 1"},
		"type=fast&inside=192.168.2.5": {"fast-enter 2"},
		"type=call-cleared":            {"call-cleared 2"},
	}
	for q, s := range subs {
		var got []string
		for s.Pending() > 0 {
			e := next(t, s)
			w := string(e.Type)
			if e.HasCall {
				w += " " + string(rune('0'+e.Call.OuterID))
			}
			got = append(got, w)
		}
		if !slices.Equal(got, want[q]) {
			t.Errorf("filter %q: %v, want %v", q, got, want[q])
		}
		s.Close()
	}
	if h.Subscribers() != 0 {
		t.Errorf("%d subscribers after Close", h.Subscribers())
	}
}

// TestParseErrors: a bad CIDR, an unknown type or parameter is refused.
func TestParseErrors(t *testing.T) {
	for _, q := range []string{"inside=192.168.1.0/33", "peer=example.com", "type=call-upp", "insid=1.2.3.4", "inside=::1"} {
		v, _ := url.ParseQuery(q)
		if _, err := events.ParseQuery(v); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	f := events.Filter{Inside: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Types: []events.Type{events.CallUp, events.CallDown}}
	back, err := events.ParseQuery(f.Query())
	if err != nil || !slices.Equal(back.Inside, f.Inside) || len(back.Types) != 2 {
		t.Errorf("Query round trip: %+v, %v", back, err)
	}
}

// TestNoSubscribers: publishing with nobody listening costs nothing.
func TestNoSubscribers(t *testing.T) {
	h := events.NewHub()
	c := callOf("192.168.1.10", "198.51.100.10", 1)
	if n := testing.AllocsPerRun(100, func() { h.CallUp(c) }); n != 0 {
		t.Errorf("%v allocations per event without subscribers", n)
	}
}
