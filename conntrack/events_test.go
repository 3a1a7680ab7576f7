package conntrack_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// stuckObserver blocks every event until release is closed: a log sink
// that stopped draining (a full pipe, a stuck journald).
type stuckObserver struct {
	release chan struct{}
	heard   atomic.Int64
}

func (o *stuckObserver) wait()                                  { <-o.release; o.heard.Add(1) }
func (o *stuckObserver) CallUp(conntrack.CallInfo)              { o.wait() }
func (o *stuckObserver) CallRefused(conntrack.CallInfo, string) { o.wait() }
func (o *stuckObserver) CallDown(conntrack.CallInfo, string)    { o.wait() }
func (o *stuckObserver) Malformed(conntrack.ConnInfo, string)   { o.wait() }

// TestStuckObserver: with the observer blocked for good, calls are still
// set up and torn down, GRE is still translated, and the events that do
// not fit the buffer are dropped and counted; Run stops on its context.
func TestStuckObserver(t *testing.T) {
	obs := &stuckObserver{release: make(chan struct{})}
	buf := conntrack.NewEventBuffer(obs, 4)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { buf.Run(ctx); close(stopped) }()
	tbl := conntrack.New(conntrack.Limits{}, buf)

	const calls = 50
	done := make(chan struct{})
	var outers [calls]uint16
	go func() {
		defer close(done)
		f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
		f.start()
		for i := range outers {
			outers[i] = f.pnsCall(uint16(0x100+i), uint16(0x9000+i))
		}
		for i := range outers[:calls/2] {
			f.send(dirIn, cdn(uint16(0x9000+i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("control processing stalled behind a stuck observer")
	}
	for i, outer := range outers {
		_, _, v := tbl.GREIn(pac1, pub1, outer, 100, t0.UnixNano())
		if want := conntrack.GREForward; i < calls/2 {
			if v != conntrack.GREUnknown {
				t.Errorf("GRE of torn-down call %d: %v", i, v)
			}
		} else if v != want {
			t.Errorf("GRE of call %d: %v, want %v", i, v, want)
		}
	}
	// 75 events (50 up, 25 down): at most 4 buffered and 1 held by Run.
	dropped := tbl.Stats()["events_dropped"]
	if dropped < calls+calls/2-5 || dropped != buf.Dropped() {
		t.Errorf("events_dropped %d (buffer says %d), want at least %d", dropped, buf.Dropped(), calls+calls/2-5)
	}
	close(obs.release)
	// Run may not have taken an event yet: it delivers what the buffer
	// holds once released.
	for deadline := time.Now().Add(5 * time.Second); obs.heard.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if n := obs.heard.Load(); n < 1 || n > 5 {
		t.Errorf("observer heard %d events, want 1 to 5", n)
	}
}

// reentrant calls back into the table from every event: it would
// deadlock were events delivered with the lock held.
type reentrant struct {
	tbl  *conntrack.Table
	seen []int
}

func (o *reentrant) CallUp(conntrack.CallInfo) { o.seen = append(o.seen, len(o.tbl.Calls())) }
func (o *reentrant) CallRefused(conntrack.CallInfo, string) {
	o.seen = append(o.seen, len(o.tbl.Calls()))
}
func (o *reentrant) CallDown(conntrack.CallInfo, string)  { o.seen = append(o.seen, len(o.tbl.Calls())) }
func (o *reentrant) Malformed(conntrack.ConnInfo, string) {}

// TestEventsAfterUnlock: an observer without a buffer hears each event on
// the caller's goroutine once the table is unlocked, and in order.
func TestEventsAfterUnlock(t *testing.T) {
	obs := &reentrant{}
	tbl := conntrack.New(conntrack.Limits{}, obs)
	obs.tbl = tbl
	f := twoCalls(t, tbl)
	f.send(dirIn, cdn(0x8010))
	if want := []int{1, 2, 1}; len(obs.seen) != len(want) || obs.seen[0] != 1 || obs.seen[1] != 2 || obs.seen[2] != 1 {
		t.Errorf("calls seen from the events: %v, want %v", obs.seen, want)
	}
}

// detailRecorder records every event, the detail ones included, as words.
type detailRecorder struct{ seen []string }

func (o *detailRecorder) CallUp(c conntrack.CallInfo) { o.seen = append(o.seen, "up "+c.ID()) }
func (o *detailRecorder) CallRefused(c conntrack.CallInfo, r string) {
	o.seen = append(o.seen, "refused "+r)
}
func (o *detailRecorder) CallDown(c conntrack.CallInfo, r string) {
	o.seen = append(o.seen, "down "+r)
}
func (o *detailRecorder) Malformed(conntrack.ConnInfo, string) {}
func (o *detailRecorder) ConnOpened(c conntrack.ConnInfo) {
	o.seen = append(o.seen, "opened "+c.Role.String())
}
func (o *detailRecorder) ConnClosed(c conntrack.ConnInfo, r string) {
	o.seen = append(o.seen, "closed "+r)
}
func (o *detailRecorder) CallRequested(c conntrack.CallInfo) {
	o.seen = append(o.seen, "requested "+c.Role.String())
}

// TestDetailEvents: a DetailObserver hears the connection open, each
// request (from inside and from outside) before its call is up, and the
// connection close after its calls went down; through an EventBuffer too.
func TestDetailEvents(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		obs := &detailRecorder{}
		var o conntrack.Observer = obs
		var buf *conntrack.EventBuffer
		if buffered {
			buf = conntrack.NewEventBuffer(obs, 64)
			o = buf
		}
		tbl := conntrack.New(conntrack.Limits{}, o)
		f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
		f.start()
		outer := f.pnsCall(0x100, 0x9000)
		f.send(dirIn, icrq(0x9001))
		f.rst(dirOut)
		if buffered {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				for deadline := time.Now().Add(5 * time.Second); buf.Len() > 0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			buf.Run(ctx)
		}
		id := (&conntrack.CallInfo{HasInside: true, Public: pub1, Peer: pac1, OuterID: outer}).ID()
		want := []string{"opened unknown", "requested pns-inside", "up " + id, "requested pns-inside", "down rst", "closed rst"}
		if len(obs.seen) != len(want) {
			t.Fatalf("buffered %v: heard %q, want %q", buffered, obs.seen, want)
		}
		for i := range want {
			if obs.seen[i] != want[i] {
				t.Errorf("buffered %v: event %d %q, want %q (all: %q)", buffered, i, obs.seen[i], want[i], obs.seen)
			}
		}
	}
}
