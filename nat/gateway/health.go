package gateway

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// HealthFacts are what the gateway knows of its parts at one moment,
// plain data for Judge (`/healthz`, the systemd watchdog).
type HealthFacts struct {
	At time.Time
	// Replication: a gateway pair is configured (--ha-etcd); its node
	// reaches etcd; the replication's state in words.
	Replication struct {
		Configured, Connected bool
		Detail                string
	}
	// QueuesBound: both queue sets are bound and receiving.
	QueuesBound bool
	// QueueDrops: packets the kernel dropped at the queues plus ENOBUFS
	// of the netlink sockets, since start; QueueDropsGrew is when a
	// Health call last saw the sum grow (zero: never).
	QueueDrops     uint64
	QueueDropsGrew time.Time
	// RulesKept: a Keeper checks the rules (the daemon manages
	// iptables); RulesMissing is what its last round found and left.
	RulesKept    bool
	RulesRepair  bool
	RulesMissing uint64
	// GREPathRequested is --gre-path; GREPathInUse the first tier
	// running (PathQueue: none).
	GREPathRequested string
	GREPathInUse     string
	FastPaths        []FastPathHealth
	// StateFile: a state file is configured; StateWritten is its last
	// successful write (Run's start before the first one; zero before
	// Run), StateError the last write's error ("" when it worked).
	StateFile        bool
	StateWritten     time.Time
	StateError       string
	SnapshotInterval time.Duration
	// CallsActive (established and closing), CallsPending and the limit
	// both count against (--max-calls).
	CallsActive, CallsPending, MaxCalls int
	// EventsDropped: call events the bounded buffer dropped since start;
	// EventsDroppedGrew as QueueDropsGrew.
	EventsDropped     uint64
	EventsDroppedGrew time.Time
}

// FastPathHealth is one running fast path's reconciler.
type FastPathHealth struct {
	Name    string // PathBPF or PathKernel
	Failing bool   // the kernel refuses its updates
	Errors  uint64
}

// healthTracker is what Health remembers between calls: counters seen
// growing, the state file's last write.
type healthTracker struct {
	mu                sync.Mutex
	queueDrops        uint64
	queueDropsGrew    time.Time
	eventsDropped     uint64
	eventsDroppedGrew time.Time
	stateWritten      time.Time
	stateErr          string
	primed            bool // a Health call set the counters' baseline
}

// stateWrite records a state file write at now (snapshot).
func (h *healthTracker) stateWrite(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.stateErr = err.Error()
		return
	}
	h.stateWritten, h.stateErr = now, ""
}

// grew records a counter's value and returns when it last grew.
func grew(last *uint64, at *time.Time, now uint64, t time.Time) time.Time {
	if now > *last {
		*at = t
	}
	*last = now
	return *at
}

// Health returns the facts of every part at now; it may be called from
// any goroutine once Start succeeded. Counters seen growing are
// remembered, so call it regularly (the watchdog does).
func (g *Gateway) Health(now time.Time) HealthFacts {
	s := g.Stats()
	f := HealthFacts{
		At:               now,
		QueuesBound:      running(g.ctlQ) && running(g.greQ),
		QueueDrops:       s["queue_drops"] + s["queue_enobufs"],
		RulesKept:        g.keeper != nil,
		RulesRepair:      g.cfg.RepairRules,
		RulesMissing:     s["rules_missing"],
		GREPathRequested: g.cfg.GREPath,
		GREPathInUse:     g.pathChoice.Path,
		StateFile:        g.deps.State != nil,
		CallsActive:      int(s["calls_active"]),
		CallsPending:     int(s["calls_pending"]),
		MaxCalls:         g.table.Limits().MaxCalls,
		EventsDropped:    s["events_dropped"],
	}
	for _, r := range g.fast {
		st := r.Stats()
		f.FastPaths = append(f.FastPaths, FastPathHealth{Name: r.Backend().Name(), Failing: st.Failing, Errors: st.Errors})
	}
	g.mu.Lock()
	f.SnapshotInterval = g.cfg.SnapshotInterval
	g.mu.Unlock()
	h := &g.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.primed { // growth is counted from the first check on
		h.queueDrops, h.eventsDropped, h.primed = f.QueueDrops, f.EventsDropped, true
	}
	f.QueueDropsGrew = grew(&h.queueDrops, &h.queueDropsGrew, f.QueueDrops, now)
	f.EventsDroppedGrew = grew(&h.eventsDropped, &h.eventsDroppedGrew, f.EventsDropped, now)
	f.StateWritten, f.StateError = h.stateWritten, h.stateErr
	f.Replication.Configured, f.Replication.Connected, f.Replication.Detail = g.replicationHealth()
	return f
}

// running tells whether a queue set is bound and its receive loop alive.
func running(q Queues) bool {
	if q == nil {
		return false
	}
	select {
	case <-q.Done():
		return false
	default:
		return true
	}
}

// Problem is one part that does not work as configured. Restart says
// whether restarting the daemon cures it (liveness: the systemd watchdog
// and `pptpgw health --live`): only unbound queues. A restart does not
// cure overload (drops, a full table) and would drop calls on top; an
// unwritable state file would be unreadable at the restart too (the table
// starts empty); the fast path and the rules have their own repair loops,
// and --repair-rules=false is the operator's choice to only report.
type Problem struct {
	Part    string `json:"part"`
	Detail  string `json:"detail"`
	Restart bool   `json:"restart"`
}

// Parts Judge names.
const (
	PartQueues   = "queues"
	PartRules    = "rules"
	PartFastPath = "fast-path"
	PartState    = "state-file"
	PartCalls    = "call-table"
	PartEvents   = "events"
	PartReplica  = "replication"
)

// OverflowWindow is how long a queue or the events buffer counts as
// overflowing after its drop counter was last seen growing.
const OverflowWindow = 10 * time.Second

// Judge returns what is wrong according to f; none: healthy.
func Judge(f HealthFacts) []Problem {
	var ps []Problem
	add := func(part string, restart bool, format string, a ...any) {
		ps = append(ps, Problem{Part: part, Detail: fmt.Sprintf(format, a...), Restart: restart})
	}
	if !f.QueuesBound {
		add(PartQueues, true, "the NFQUEUE queues are not bound")
	}
	if recent(f.At, f.QueueDropsGrew) {
		add(PartQueues, false, "the queues overflowed %s ago (%d packets dropped since start): the daemon does not keep up",
			since(f.At, f.QueueDropsGrew), f.QueueDrops)
	}
	if f.RulesKept && f.RulesMissing > 0 {
		what := "not repaired: --repair-rules=false"
		if f.RulesRepair {
			what = "the repair failed"
		}
		add(PartRules, false, "%d rules or chains differ from the configuration (%s)", f.RulesMissing, what)
	}
	judgeFastPath(f, add)
	judgeState(f, add)
	if f.MaxCalls > 0 && (f.CallsActive >= f.MaxCalls || f.CallsPending >= f.MaxCalls) {
		add(PartCalls, false, "the call table is full (%d up, %d pending, --max-calls %d): new calls are refused",
			f.CallsActive, f.CallsPending, f.MaxCalls)
	}
	if r := f.Replication; r.Configured && !r.Connected {
		add(PartReplica, false, "etcd is not reachable: calls set up now are published when it returns (%s)", r.Detail)
	}
	if recent(f.At, f.EventsDroppedGrew) {
		add(PartEvents, false, "call events dropped %s ago (%d since start): the log sink does not keep up",
			since(f.At, f.EventsDroppedGrew), f.EventsDropped)
	}
	return ps
}

func judgeFastPath(f HealthFacts, add func(string, bool, string, ...any)) {
	for _, p := range f.FastPaths {
		if p.Failing {
			add(PartFastPath, false, "the %s path's kernel objects refuse updates or reads (%d errors): re-syncing; new calls' GRE takes the queues meanwhile", p.Name, p.Errors)
		}
	}
	switch f.GREPathRequested {
	case PathAuto:
		if f.GREPathInUse == PathQueue {
			add(PartFastPath, false, "--gre-path auto found no fast path that works: all GRE takes the queues")
		}
	case PathBPF, PathKernel:
		if f.GREPathInUse != f.GREPathRequested {
			add(PartFastPath, false, "--gre-path %s, but %s is in use", f.GREPathRequested, f.GREPathInUse)
		}
	}
}

func judgeState(f HealthFacts, add func(string, bool, string, ...any)) {
	if !f.StateFile || f.SnapshotInterval <= 0 {
		return
	}
	if f.StateWritten.IsZero() { // Run has not started its writes yet
		if f.StateError != "" {
			add(PartState, false, "never written: %s", f.StateError)
		}
		return
	}
	if late := f.At.Sub(f.StateWritten); late > 2*f.SnapshotInterval {
		detail := fmt.Sprintf("not written for %s (every %s)", late.Round(time.Second), f.SnapshotInterval)
		if f.StateError != "" {
			detail += ": " + f.StateError
		}
		add(PartState, false, "%s", detail)
	}
}

func recent(now, t time.Time) bool { return !t.IsZero() && now.Sub(t) < OverflowWindow }

func since(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() }

// Summary is one line of problems (logs).
func Summary(ps []Problem) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Part + ": " + p.Detail
	}
	return strings.Join(s, "; ")
}
