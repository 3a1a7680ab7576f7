package nfqtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pptpgw/pptpgw/nat/nfq"
)

// handler drops "drop", rewrites "mod" to "MOD", marks "mark", marks
// "indev" with its input interface, panics on "panic" and accepts the rest.
func handler(_ uint16, pkt []byte, mark uint32, m nfq.Meta) (nfq.Verdict, uint32, bool) {
	switch string(pkt) {
	case "indev":
		return nfq.Accept, m.InDev, false
	case "drop":
		return nfq.Drop, mark | 1, true
	case "mod":
		copy(pkt, "MOD")
		return nfq.Accept, mark, true
	case "mark":
		return nfq.Accept, mark | 0x100, false
	case "panic":
		panic("handler bug")
	}
	return nfq.Accept, mark, false
}

func open(t *testing.T, cfg nfq.Config, h nfq.Handler) *Queues {
	t.Helper()
	s, err := Open(t.Context(), cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestVerdicts(t *testing.T) {
	s := open(t, nfq.Config{Queue: 10, Queues: 2}, handler)
	for _, tc := range []struct {
		in   string
		want Result
	}{
		{"pass", Result{Queue: 10, Verdict: nfq.Accept, Mark: 5, Packet: []byte("pass")}},
		{"drop", Result{Queue: 10, Verdict: nfq.Drop, Mark: 5, Packet: []byte("drop")}},
		{"mod", Result{Queue: 11, Verdict: nfq.Accept, Mark: 5, Modified: true, Packet: []byte("MOD")}},
		{"mark", Result{Queue: 11, Verdict: nfq.Accept, Mark: 0x105, Packet: []byte("mark")}},
		{"panic", Result{Queue: 11, Verdict: nfq.Drop, Mark: 5, Packet: []byte("panic"), Panicked: true}},
		{"indev", Result{Queue: 10, Verdict: nfq.Accept, Mark: 9, Packet: []byte("indev")}},
	} {
		in := []byte(tc.in)
		got, err := s.Handle(tc.want.Queue, in, 5, nfq.Meta{HasInDev: true, InDev: 9})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.in, d)
		}
		if string(in) != tc.in {
			t.Errorf("injected packet changed to %q", in)
		}
	}
	want := nfq.Stats{Packets: 6, Dropped: 2, Modified: 1, Marked: 2, Panics: 1}
	if st := s.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if _, err := s.Inject(12, nil, 0, nfq.Meta{}); err == nil {
		t.Error("queue 12 accepted")
	}
}

// Each queue calls the handler from one goroutine, in injection order; a
// queue whose handler waits does not hold up another.
func TestOrder(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[uint16][]string{}
	s := open(t, nfq.Config{Queue: 0, Queues: 2}, func(q uint16, pkt []byte, mark uint32, m nfq.Meta) (nfq.Verdict, uint32, bool) {
		if q == 0 {
			<-release
		}
		mu.Lock()
		seen[q] = append(seen[q], string(pkt))
		mu.Unlock()
		return nfq.Accept, mark, false
	})
	var results []<-chan Result
	var want []string
	for i := range 100 {
		p := fmt.Sprint(i)
		want = append(want, p)
		for q := range uint16(2) {
			ch, err := s.Inject(q, []byte(p), 0, nfq.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, ch)
		}
	}
	// queue 1 finishes while queue 0 waits
	for i := 1; i < len(results); i += 2 {
		<-results[i]
	}
	close(release)
	for i := 0; i < len(results); i += 2 {
		<-results[i]
	}
	for q := range uint16(2) {
		if d := cmp.Diff(want, seen[q]); d != "" {
			t.Errorf("queue %d order (-want +got):\n%s", q, d)
		}
	}
}

// A full queue drops what overflows it, or accepts it with fail-open.
func TestOverflow(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprint("failOpen=", failOpen), func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			s := open(t, nfq.Config{MaxQueueLen: 1, FailOpen: failOpen}, func(_ uint16, pkt []byte, mark uint32, _ nfq.Meta) (nfq.Verdict, uint32, bool) {
				if string(pkt) == "held" {
					close(started)
					<-release
				}
				return nfq.Accept, mark, false
			})
			held, _ := s.Inject(0, []byte("held"), 0, nfq.Meta{})
			<-started
			queued, _ := s.Inject(0, []byte("queued"), 0, nfq.Meta{})
			over, err := s.Handle(0, []byte("over"), 3, nfq.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Verdict: nfq.Drop, Mark: 3, Packet: []byte("over"), Overflow: true}
			if failOpen {
				want.Verdict = nfq.Accept
			}
			if d := cmp.Diff(want, over); d != "" {
				t.Errorf("overflow (-want +got):\n%s", d)
			}
			close(release)
			for _, ch := range []<-chan Result{held, queued} {
				if r := <-ch; r.Verdict != nfq.Accept || r.Overflow {
					t.Errorf("result %+v", r)
				}
			}
			if st := s.Stats(); st.Packets != 2 {
				t.Errorf("Stats = %+v, want the 2 packets handled", st)
			}
		})
	}
}

// Close, the context's end and Fail stop the source; packets still queued
// get no result, and nothing is injected afterwards.
func TestStop(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s := open(t, nfq.Config{}, func(_ uint16, pkt []byte, mark uint32, _ nfq.Meta) (nfq.Verdict, uint32, bool) {
		close(started)
		<-release
		return nfq.Accept, mark, false
	})
	s.Inject(0, []byte("held"), 0, nfq.Meta{})
	<-started
	queued, _ := s.Inject(0, []byte("queued"), 0, nfq.Meta{})
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while the handler runs", err)
	case <-time.After(20 * time.Millisecond):
	}
	release <- struct{}{}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	if r, ok := <-queued; ok {
		t.Errorf("queued packet got %+v after stop", r)
	}
	if _, err := s.Handle(0, []byte("late"), 0, nfq.Meta{}); !errors.Is(err, ErrStopped) {
		t.Errorf("Handle after stop = %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	s, _ = Open(ctx, nfq.Config{}, handler)
	cancel()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not stopped by the context")
	}
	if err := s.Wait(); err != nil {
		t.Errorf("Wait = %v", err)
	}

	s = open(t, nfq.Config{}, handler)
	bad := errors.New("socket gone")
	s.Fail(bad)
	if err := s.Wait(); err != bad {
		t.Errorf("Wait after Fail = %v", err)
	}
	var src nfq.Source = s
	if err := src.Close(); err != bad {
		t.Errorf("Close after Fail = %v", err)
	}

	if _, err := Open(t.Context(), nfq.Config{}, nil); err == nil {
		t.Error("nil handler accepted")
	}
	if _, err := Open(t.Context(), nfq.Config{Queue: 65535, Queues: 2}, handler); err == nil {
		t.Error("queues 65535..65536 accepted")
	}
}
