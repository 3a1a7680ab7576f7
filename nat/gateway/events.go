package gateway

import (
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/events"
)

// Events is the live event stream (`pptpgw events`): subscribe to it.
func (g *Gateway) Events() *events.Hub { return g.hub }

// observer is what the call table tells its events: the configured
// observer (the call log) behind its bounded buffer, and the event hub.
// The hub is called directly, after the table's lock, on the goroutine
// that caused the event: it never blocks (a slow subscriber loses events)
// and so needs no buffer and goroutine of its own, and a stuck log sink
// does not starve the stream.
func (g *Gateway) observer() conntrack.Observer {
	f := &fanout{hub: g.hub}
	if g.cfg.Observer != nil {
		g.events = conntrack.NewEventBuffer(g.cfg.Observer, 0)
		f.buf = g.events
	}
	return f
}

// eventStats: event_streams_active (readers of the stream now) and
// events_lost (events they lost for reading too slowly, in all).
func (g *Gateway) eventStats(s map[string]uint64) {
	s["event_streams_active"] = uint64(g.hub.Subscribers())
	s["events_lost"] = g.hub.LostTotal()
}

// fanout hands every event of the table to the log's buffer and the hub.
type fanout struct {
	buf *conntrack.EventBuffer // nil: no log
	hub *events.Hub
}

func (f *fanout) CallUp(c conntrack.CallInfo) {
	if f.buf != nil {
		f.buf.CallUp(c)
	}
	f.hub.CallUp(c)
}

func (f *fanout) CallRefused(c conntrack.CallInfo, reason string) {
	if f.buf != nil {
		f.buf.CallRefused(c, reason)
	}
	f.hub.CallRefused(c, reason)
}

func (f *fanout) CallDown(c conntrack.CallInfo, reason string) {
	if f.buf != nil {
		f.buf.CallDown(c, reason)
	}
	f.hub.CallDown(c, reason)
}

func (f *fanout) Malformed(c conntrack.ConnInfo, reason string) {
	if f.buf != nil {
		f.buf.Malformed(c, reason)
	}
	f.hub.Malformed(c, reason)
}

func (f *fanout) ControlDenied(c conntrack.ConnInfo, reason string) {
	if f.buf != nil {
		f.buf.ControlDenied(c, reason)
	}
	f.hub.ControlDenied(c, reason)
}

func (f *fanout) ConnOpened(c conntrack.ConnInfo) {
	if f.buf != nil {
		f.buf.ConnOpened(c)
	}
	f.hub.ConnOpened(c)
}

func (f *fanout) ConnClosed(c conntrack.ConnInfo, reason string) {
	if f.buf != nil {
		f.buf.ConnClosed(c, reason)
	}
	f.hub.ConnClosed(c, reason)
}

func (f *fanout) CallRequested(c conntrack.CallInfo) {
	if f.buf != nil {
		f.buf.CallRequested(c)
	}
	f.hub.CallRequested(c)
}

// Dropped is what the log's buffer dropped (the table's events_dropped).
func (f *fanout) Dropped() uint64 {
	if f.buf == nil {
		return 0
	}
	return f.buf.Dropped()
}
