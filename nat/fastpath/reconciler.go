package fastpath

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/conntrack"
)

// Config configures a Reconciler.
type Config struct {
	// Tick is how often a failed kernel is retried and the counters
	// considered for a read (default 1 s).
	Tick time.Duration
	// CountersPerTick: the counters are read every tick up to this many
	// mappings, above it every mappings/CountersPerTick ticks. Dumping
	// nf_tables sets costs the kernel more than linear time (about 110 ms
	// for 10 000 calls), while idle timeouts count in minutes. 0: every
	// tick.
	CountersPerTick int
	Log             *zap.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// OnMapping, when set, hears each mapping entering (entered) or
	// leaving the kernel once the backend took the change, on Run's
	// goroutine: it must not block (`pptpgw events`).
	OnMapping func(m conntrack.GREMap, entered bool)
}

// Stats are a Reconciler's counters.
type Stats struct {
	Mappings   uint64 // calls the kernel holds now
	Applies    uint64 // successful Apply and Replace calls
	Errors     uint64 // refused Apply, Replace and Counters calls
	Generation uint64 // of the desired state last applied
	// Failing: the kernel refused the last update or counter read and
	// every re-sync since (GRE of new calls takes the queues meanwhile).
	Failing bool
	PacketsIn, PacketsOut,
	BytesIn, BytesOut uint64 // translated by the kernel, read from its counters
}

// applied is a mapping the backend holds, with its counters as last read.
type applied struct {
	m                 conntrack.GREMap
	pktsIn, bytesIn   uint64
	pktsOut, bytesOut uint64
	lastIn, lastOut   time.Time
}

// Reconciler converges a Backend to a Source's desired state. Run is its
// only goroutine; Stats may be read from any.
type Reconciler struct {
	cfg     Config
	src     Source
	be      Backend
	log     *zap.Logger
	changed <-chan struct{} // src's signal, ours alone

	// Run's own
	in      map[InKey]*applied
	out     map[OutKey]*applied
	desired []conntrack.GREMap
	want    map[InKey]conntrack.GREMap
	gen     uint64
	failing bool
	ticks   int

	mappings, applies, errs, generation atomic.Uint64
	failingNow                          atomic.Bool // failing, for Stats
	pktsIn, pktsOut, bytesIn, bytesOut  atomic.Uint64
}

// New returns a Reconciler of be to src.
func New(src Source, be Backend, cfg Config) *Reconciler {
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reconciler{cfg: cfg, src: src, be: be, log: cfg.Log, changed: src.DesiredChanged(),
		in: map[InKey]*applied{}, out: map[OutKey]*applied{}}
	if fc, ok := be.(FinalCounter); ok {
		fc.OnDelete(r.final)
	}
	return r
}

// final credits a mapping's last counters, read as Apply deletes it.
func (r *Reconciler) final(m conntrack.GREMap, in bool, c Counters) {
	now := r.cfg.Now()
	if a := r.in[InKeyOf(m)]; in && a != nil {
		r.credit(a, true, &a.pktsIn, &a.bytesIn, &a.lastIn, c, now)
	} else if a := r.out[OutKeyOf(m)]; !in && a != nil {
		r.credit(a, false, &a.pktsOut, &a.bytesOut, &a.lastOut, c, now)
	}
}

// Backend returns the backend it drives.
func (r *Reconciler) Backend() Backend { return r.be }

// Start puts the desired state in the kernel with Replace; an error means
// the backend could not be programmed at all (the caller may fall back to
// another path).
func (r *Reconciler) Start() error {
	r.desired, r.gen = r.src.Desired(r.desired[:0])
	if err := r.be.Replace(r.desired); err != nil {
		r.errs.Add(1)
		return err
	}
	r.reset(r.desired)
	r.applies.Add(1)
	return nil
}

// Run keeps the kernel converged until ctx ends. Start must have
// succeeded.
func (r *Reconciler) Run(ctx context.Context) {
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	r.log.Info("GRE fast path running", zap.String("path", r.be.Name()), zap.Int("calls", len(r.in)))
	defer r.log.Info("GRE fast path stopped", zap.String("path", r.be.Name()))
	// A change is applied at once unless the last converge was less than
	// convergeGap ago: then at the end of the gap, with whatever else
	// changed meanwhile. Each converge reads the whole desired set, so
	// during a burst of call setups this bounds its CPU; the calls take
	// the queues for those milliseconds.
	var (
		next  time.Time
		later *time.Timer
		wait  <-chan time.Time
	)
	converge := func() {
		t0 := time.Now()
		r.Converge()
		next = t0.Add(convergeGap(time.Since(t0)))
	}
	defer func() {
		if later != nil {
			later.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
			if d := time.Until(next); d > 0 {
				if wait == nil {
					later = time.NewTimer(d)
					wait = later.C
				}
				continue
			}
			converge()
		case <-wait:
			wait = nil
			converge()
		case <-tick.C:
			converge()
			if r.ticks++; r.ticks >= r.counterTicks() {
				r.ticks = 0
				r.ReadCounters()
			}
		}
	}
}

// convergeGap is the least time between two converges after one that
// took took: ten times as long, so converging costs at most a tenth of a
// CPU, within [1 ms, 1 s].
func convergeGap(took time.Duration) time.Duration {
	return min(max(10*took, time.Millisecond), time.Second)
}

func (r *Reconciler) counterTicks() int {
	if r.cfg.CountersPerTick <= 0 {
		return 1
	}
	return max(1, len(r.in)/r.cfg.CountersPerTick)
}

// Converge applies what changed in the desired state since the last call;
// after a failure it replaces the kernel's state whole.
func (r *Reconciler) Converge() {
	desired, gen := r.src.Desired(r.desired[:0])
	r.desired = desired
	if gen == r.gen && !r.failing {
		return
	}
	if r.failing {
		if err := r.be.Replace(desired); err != nil {
			r.errs.Add(1)
			return // logged when it started failing
		}
		r.log.Info("GRE fast path re-synced", zap.String("path", r.be.Name()), zap.Int("calls", len(desired)))
		r.failing = false
		r.failingNow.Store(false)
		r.reset(desired)
	} else {
		add, del := r.diff(desired)
		if len(add)+len(del) > 0 {
			if err := r.be.Apply(add, del); err != nil {
				r.errs.Add(1)
				r.failing = true
				r.failingNow.Store(true)
				r.log.Error("GRE fast path update refused by the kernel; GRE of new calls takes the queues until a re-sync works",
					zap.String("path", r.be.Name()), zap.Error(err))
				return
			}
			r.commit(add, del)
			r.log.Debug("GRE fast path updated", zap.String("path", r.be.Name()), zap.Int("added", len(add)),
				zap.Int("removed", len(del)), zap.Uint64("generation", gen))
		}
	}
	r.gen = gen
	r.generation.Store(gen)
	r.applies.Add(1)
}

// diff returns what to add and remove to turn the applied state into
// desired; a mapping whose value changed is removed and added again.
func (r *Reconciler) diff(desired []conntrack.GREMap) (add, del []conntrack.GREMap) {
	if r.want == nil {
		r.want = make(map[InKey]conntrack.GREMap, len(desired))
	}
	want := r.want // reused: a converge at 10 000 calls allocates no map
	clear(want)
	for _, m := range desired {
		want[InKeyOf(m)] = m
	}
	for k, a := range r.in {
		if m, ok := want[k]; !ok || m != a.m {
			del = append(del, a.m)
		}
	}
	for _, m := range desired {
		if a := r.in[InKeyOf(m)]; a == nil || a.m != m {
			add = append(add, m)
		}
	}
	return add, del
}

func (r *Reconciler) commit(add, del []conntrack.GREMap) {
	for _, m := range del {
		delete(r.in, InKeyOf(m))
		delete(r.out, OutKeyOf(m))
		r.report(m, false)
	}
	for _, m := range add {
		a := &applied{m: m}
		r.in[InKeyOf(m)] = a
		r.out[OutKeyOf(m)] = a
		r.report(m, true)
	}
	r.mappings.Store(uint64(len(r.in)))
}

func (r *Reconciler) report(m conntrack.GREMap, entered bool) {
	if r.cfg.OnMapping != nil {
		r.cfg.OnMapping(m, entered)
	}
}

// reset records that the backend holds exactly desired (after Replace),
// counting afresh; OnMapping hears only the mappings that changed.
func (r *Reconciler) reset(desired []conntrack.GREMap) {
	if r.cfg.OnMapping != nil {
		want := make(map[InKey]conntrack.GREMap, len(desired))
		for _, m := range desired {
			want[InKeyOf(m)] = m
		}
		for k, a := range r.in {
			if m, ok := want[k]; !ok || m != a.m {
				r.report(a.m, false)
			}
		}
		for _, m := range desired {
			if a := r.in[InKeyOf(m)]; a == nil || a.m != m {
				r.report(m, true)
			}
		}
	}
	clear(r.in)
	clear(r.out)
	on := r.cfg.OnMapping
	r.cfg.OnMapping = nil // reported above
	r.commit(desired, nil)
	r.cfg.OnMapping = on
}

// ReadCounters reads the kernel's per-call counters and gives the calls
// what it translated since the last read.
func (r *Reconciler) ReadCounters() {
	if r.failing || len(r.in) == 0 {
		return
	}
	now := r.cfg.Now()
	err := r.be.Counters(func(k InKey, c Counters) {
		if a := r.in[k]; a != nil {
			r.credit(a, true, &a.pktsIn, &a.bytesIn, &a.lastIn, c, now)
		}
	}, func(k OutKey, c Counters) {
		if a := r.out[k]; a != nil {
			r.credit(a, false, &a.pktsOut, &a.bytesOut, &a.lastOut, c, now)
		}
	})
	if err != nil {
		// Unreadable kernel objects are most likely gone (nft flush
		// ruleset, a removed bpf pin): re-sync them whole at the next
		// tick rather than wait for the next change to find out.
		r.errs.Add(1)
		r.failing = true
		r.failingNow.Store(true)
		r.log.Warn("read the GRE fast path's counters; re-syncing", zap.String("path", r.be.Name()), zap.Error(err))
	}
}

func (r *Reconciler) credit(a *applied, in bool, pkts, byts *uint64, last *time.Time, c Counters, now time.Time) {
	if c.Packets < *pkts || c.Bytes < *byts { // the kernel's entry was re-created
		*pkts, *byts = 0, 0
	}
	dp, db := c.Packets-*pkts, c.Bytes-*byts
	*pkts, *byts = c.Packets, c.Bytes
	seen := c.Last
	if seen.IsZero() && dp > 0 {
		seen = now
	}
	if dp == 0 && !seen.After(*last) {
		return
	}
	*last = seen
	r.src.FastPathCounters(a.m, in, dp, db, seen)
	if in {
		r.pktsIn.Add(dp)
		r.bytesIn.Add(db)
	} else {
		r.pktsOut.Add(dp)
		r.bytesOut.Add(db)
	}
}

// Stop reads the counters a last time and lets go of the kernel objects;
// with remove they are deleted.
func (r *Reconciler) Stop(remove bool) error {
	r.ReadCounters()
	return r.be.Close(remove)
}

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	return Stats{Mappings: r.mappings.Load(), Applies: r.applies.Load(), Errors: r.errs.Load(),
		Generation: r.generation.Load(), Failing: r.failingNow.Load(), PacketsIn: r.pktsIn.Load(), PacketsOut: r.pktsOut.Load(),
		BytesIn: r.bytesIn.Load(), BytesOut: r.bytesOut.Load()}
}
