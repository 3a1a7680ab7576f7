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
	f := &fanout{}
	if g.cfg.Observer != nil {
		g.events = conntrack.NewEventBuffer(g.cfg.Observer, 0)
		f.buf = g.events
		f.sinks = append(f.sinks, f.buf)
	}
	f.sinks = append(f.sinks, g.hub)
	return f
}

// eventStats: event_streams_active (readers of the stream now) and
// events_lost (events they lost for reading too slowly, in all).
func (g *Gateway) eventStats(s map[string]uint64) {
	s["event_streams_active"] = uint64(g.hub.Subscribers())
	s["events_lost"] = g.hub.LostTotal()
}

// eventSink hears every event of the table: the log's buffer and the hub.
type eventSink interface {
	conntrack.Observer
	conntrack.PolicyObserver
	conntrack.DetailObserver
}

// fanout hands every event of the table to the log's buffer and the hub.
type fanout struct {
	buf   *conntrack.EventBuffer // nil: no log
	sinks []eventSink            // buf when there is a log, then the hub
}

// each hands one event to every sink, in order.
func (f *fanout) each(hear func(eventSink)) {
	for _, s := range f.sinks {
		hear(s)
	}
}

func (f *fanout) CallUp(c conntrack.CallInfo) { f.each(func(s eventSink) { s.CallUp(c) }) }
func (f *fanout) CallRefused(c conntrack.CallInfo, reason string) {
	f.each(func(s eventSink) { s.CallRefused(c, reason) })
}
func (f *fanout) CallDown(c conntrack.CallInfo, reason string) {
	f.each(func(s eventSink) { s.CallDown(c, reason) })
}
func (f *fanout) Malformed(c conntrack.ConnInfo, reason string) {
	f.each(func(s eventSink) { s.Malformed(c, reason) })
}
func (f *fanout) ControlDenied(c conntrack.ConnInfo, reason string) {
	f.each(func(s eventSink) { s.ControlDenied(c, reason) })
}
func (f *fanout) ConnOpened(c conntrack.ConnInfo) { f.each(func(s eventSink) { s.ConnOpened(c) }) }
func (f *fanout) ConnClosed(c conntrack.ConnInfo, reason string) {
	f.each(func(s eventSink) { s.ConnClosed(c, reason) })
}
func (f *fanout) CallRequested(c conntrack.CallInfo) {
	f.each(func(s eventSink) { s.CallRequested(c) })
}

// Dropped is what the log's buffer dropped (the table's events_dropped).
func (f *fanout) Dropped() uint64 {
	if f.buf == nil {
		return 0
	}
	return f.buf.Dropped()
}
