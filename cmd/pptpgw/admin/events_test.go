package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/events"
)

// streamBackend is fakeBackend with an event hub; buffer sizes its
// subscribers' buffers.
type streamBackend struct {
	fakeBackend
	hub    *events.Hub
	buffer int
}

func (b *streamBackend) SubscribeEvents(f events.Filter) *events.Sub {
	return b.hub.Subscribe(f, b.buffer)
}

func ca(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

func sampleCall(inside, peer string, outer uint16) conntrack.CallInfo {
	return conntrack.CallInfo{Role: conntrack.RolePNSInside, State: conntrack.StateEstablished,
		Inside: ca(inside), InsideID: 1, HasInside: true, Public: ca("198.51.100.1"), OuterID: outer,
		Peer: ca(peer), PeerID: 9, HasPeer: true, Created: t0.UnixNano(), PacketsIn: 3, BytesIn: 300}
}

// readStream reads lines from GET /v1/events?q into a channel.
func readStream(t *testing.T, ctx context.Context, path string, q url.Values) (<-chan string, <-chan error) {
	lines, errc := make(chan string, 100), make(chan error, 1)
	go func() {
		errc <- NewClient(path).Events(ctx, q, func(l []byte) error {
			if l != nil { // nil: the stream is open
				lines <- string(l)
			}
			return nil
		})
	}()
	return lines, errc
}

func waitSubscribers(t *testing.T, h *events.Hub, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); h.Subscribers() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", h.Subscribers(), n)
		}
	}
}

func line(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no line within 5s")
	}
	return ""
}

// TestEventStream: the filter of the query is applied by the server, each
// event arrives as one JSON line as it happens, and the stream ends when
// the reader cancels (its subscription goes) and when the server shuts
// down.
func TestEventStream(t *testing.T) {
	b := &streamBackend{hub: events.NewHub()}
	s, path := startServer(t, b, nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	all, _ := readStream(t, ctx, path, nil)
	some, someErr := readStream(t, t.Context(), path, url.Values{"inside": {"192.168.1.0/24"}, "type": {"call-down,conn"}})
	waitSubscribers(t, b.hub, 2)

	b.hub.CallUp(sampleCall("192.168.2.7", "203.0.113.5", 5))
	b.hub.CallDown(sampleCall("192.168.1.10", "203.0.113.5", 6), "cdn")
	got := line(t, all)
	var v EventView
	if err := json.Unmarshal([]byte(got), &v); err != nil || v.Type != "call-up" || v.ID != "198.51.100.1/203.0.113.5/5" ||
		v.Call == nil || v.Call.InsideAddr != "192.168.2.7" {
		t.Errorf("first line %s (%v)", got, err)
	}
	line(t, all)
	got = line(t, some)
	if err := json.Unmarshal([]byte(got), &v); err != nil || v.Type != "call-down" || v.Reason != "cdn" ||
		v.InsideAddr != "192.168.1.10" || v.DurationSeconds <= 0 || v.Call.PacketsIn != 3 {
		t.Errorf("filtered stream: %s (%v)", got, err)
	}
	cancel()
	waitSubscribers(t, b.hub, 1)

	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer scancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown with a stream open: %v", err)
	}
	select {
	case err := <-someErr:
		if err == nil || !strings.Contains(err.Error(), "closed the event stream") {
			t.Errorf("stream end: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the stream outlived Shutdown")
	}
}

// TestEventStreamLost: a reader slower than the events loses some and is
// told how many in a lost line, in place; the server never blocks.
func TestEventStreamLost(t *testing.T) {
	b := &streamBackend{hub: events.NewHub(), buffer: 2}
	_, path := startServer(t, b, nil, nil)
	release := make(chan struct{})
	lines := make(chan string, 1000)
	go NewClient(path).Events(t.Context(), nil, func(l []byte) error {
		if l == nil {
			return nil
		}
		<-release
		lines <- string(l)
		return nil
	})
	waitSubscribers(t, b.hub, 1)
	const n = 20000 // more than the socket buffers hold
	start := time.Now()
	for i := range n {
		b.hub.ConnOpened(conntrack.ConnInfo{Serial: uint64(i)})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("publishing took %v with a stuck reader", d)
	}
	close(release)
	var seen, lost uint64
	for seen+lost < n {
		l := line(t, lines)
		if strings.HasPrefix(l, `{"type":"lost","count":`) {
			var lv LostView
			json.Unmarshal([]byte(l), &lv)
			lost += lv.Count
			continue
		}
		seen++
	}
	if lost == 0 || seen+lost != n || b.hub.LostTotal() != lost {
		t.Errorf("seen %d, lost %d (hub says %d), want %d in all with some lost", seen, lost, b.hub.LostTotal(), n)
	}
}

// TestEventStreamErrors: a bad filter is a 400 naming it; a backend
// without a stream answers 404.
func TestEventStreamErrors(t *testing.T) {
	b := &streamBackend{hub: events.NewHub()}
	_, path := startServer(t, b, nil, nil)
	err := NewClient(path).Events(t.Context(), url.Values{"type": {"call-upp"}}, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "call-upp") {
		t.Errorf("bad type: %v", err)
	}
	_, path = startServer(t, &fakeBackend{}, nil, nil)
	err = NewClient(path).Events(t.Context(), nil, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("no stream: %v", err)
	}
}

// TestCallsFilter: GET /v1/calls keeps its unfiltered body byte for byte;
// inside, peer and state select server-side; a bad one is a 400.
func TestCallsFilter(t *testing.T) {
	b := &fakeBackend{calls: sampleCalls()}
	_, path := startServer(t, b, nil, nil)
	c := NewClient(path)
	raw, _, err := c.Calls(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	raw2, _, err := c.CallsWhere(t.Context(), nil)
	if err != nil || !bytes.Equal(raw, raw2) {
		t.Errorf("CallsWhere without a filter differs: %v", err)
	}
	for _, tt := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"inside": {"192.168.1.10"}}, "198.51.100.1/203.0.113.5/40001"},
		{url.Values{"inside": {"192.168.1.0/24"}, "state": {"pending"}}, "198.51.100.1/203.0.113.5/256 198.51.100.1/203.0.113.9/pending-77"},
		{url.Values{"peer": {"203.0.113.9/32,10.0.0.0/8"}}, "198.51.100.1/203.0.113.9/pending-77"},
		{url.Values{"state": {"established,closing"}, "peer": {"203.0.113.0/24"}}, "198.51.100.1/203.0.113.5/40001"},
		{url.Values{"inside": {"10.0.0.0/8"}}, ""},
	} {
		_, calls, err := c.CallsWhere(t.Context(), tt.q)
		var ids []string
		for _, c := range calls {
			ids = append(ids, c.ID)
		}
		if err != nil || strings.Join(ids, " ") != tt.want || calls == nil {
			t.Errorf("%v: %v (%v), want %q", tt.q, ids, err, tt.want)
		}
	}
	for _, q := range []url.Values{{"state": {"up"}}, {"inside": {"300.1.1.1"}}, {"peers": {"1.2.3.4"}}} {
		_, _, err := c.CallsWhere(t.Context(), q)
		var se *statusError
		if !errors.As(err, &se) || se.code != 400 {
			t.Errorf("%v: %v, want 400", q, err)
		}
	}
}

// TestPrintEvent: the table form of each kind of line.
func TestPrintEvent(t *testing.T) {
	var buf bytes.Buffer
	PrintEventHeader(&buf)
	down := events.Event{Type: events.CallDown, Time: t0.Add(90 * time.Second), Call: sampleCall("192.168.1.10", "203.0.113.5", 6),
		HasCall: true, Reason: "cdn"}
	PrintEvent(&buf, EventViewOf(down), 0)
	open := events.Event{Type: events.ConnOpen, Time: t0, Conn: conntrack.ConnInfo{
		Inside: conntrack.Endpoint{Addr: ca("192.168.1.10"), Port: 40000}, Outside: conntrack.Endpoint{Addr: ca("203.0.113.5"), Port: 1723},
		Public: conntrack.Endpoint{Addr: ca("198.51.100.1"), Port: 40000}}}
	PrintEvent(&buf, EventViewOf(open), 0)
	fast := events.Event{Type: events.FastEnter, Time: t0, Call: sampleCall("192.168.1.10", "203.0.113.5", 6), HasCall: true, Path: "kernel"}
	PrintEvent(&buf, EventViewOf(fast), 0)
	PrintEvent(&buf, EventView{Type: "lost"}, 12)
	out := buf.String()
	for _, want := range []string{"TIME", "call-down     198.51.100.1/203.0.113.5/6", "192.168.1.10:1", "203.0.113.5:9",
		"reason=cdn duration=1m30s packets=3/0 bytes=300/0", "conn-open", "192.168.1.10:40000", "public=198.51.100.1:40000",
		"fast-enter", "path=kernel", "12 events lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
