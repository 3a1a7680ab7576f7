package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/events"
)

// logRecorder is a call log that records which events it heard.
type logRecorder struct{ heard chan string }

func (l *logRecorder) CallUp(conntrack.CallInfo)              { l.heard <- "up" }
func (l *logRecorder) CallRefused(conntrack.CallInfo, string) { l.heard <- "refused" }
func (l *logRecorder) CallDown(conntrack.CallInfo, string)    { l.heard <- "down" }
func (l *logRecorder) Malformed(conntrack.ConnInfo, string)   { l.heard <- "malformed" }

// TestObserverFanout: the table's events reach both the log (through its
// buffer, only what it listens to) and the event stream (everything,
// detail events too); the stats say how many streams read and lost.
func TestObserverFanout(t *testing.T) {
	log := &logRecorder{heard: make(chan string, 16)}
	g, _, err := testGateway(t, Config{GREPath: PathQueue, Observer: log}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	f, ok := g.observer().(*fanout) // a second one, like the table's: not run by Run here
	if !ok {
		t.Fatal("observer is not the fan-out")
	}
	sub := g.Events().Subscribe(events.Filter{}, 2)
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.buf.Run(ctx)
	c := conntrack.CallInfo{Inside: conntrack.Addr{192, 168, 1, 10}}
	f.ConnOpened(conntrack.ConnInfo{})
	f.CallUp(c)
	f.CallDown(c, "cdn") // the stream's buffer of 2 is full: lost
	select {
	case h := <-log.heard:
		if h != "up" {
			t.Errorf("log heard %s first, want up (not the connection: it does not listen to details)", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the log heard nothing")
	}
	done := make(chan struct{})
	for _, want := range []events.Type{events.ConnOpen, events.CallUp, events.Lost} {
		if e, _ := sub.Next(done); e.Type != want {
			t.Errorf("stream: %s, want %s", e.Type, want)
		}
	}
	s := g.Stats()
	if s["event_streams_active"] != 1 || s["events_lost"] != 1 {
		t.Errorf("stats event_streams_active %d, events_lost %d; want 1, 1", s["event_streams_active"], s["events_lost"])
	}
}
