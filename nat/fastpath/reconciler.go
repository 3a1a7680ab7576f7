package fastpath

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"sync"
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
	// FullEvery: every this many ticks a converge reads the whole desired
	// state even when the source tells what changed (DesiredChanges): a
	// backstop, 1.5 ms at 10 000 calls. 0: 60; negative: never.
	FullEvery int
	// OnMapping, when set, hears each mapping entering (entered) or
	// leaving the kernel once the backend took the change, on Run's
	// goroutine: it must not block (`pptpgw events`).
	OnMapping func(m conntrack.GREMap, entered bool)
	// Mirror, when set, is shared with the Reconcilers of the other
	// tiers of the same Source (NewMirror); else it has its own.
	Mirror *Mirror
}

// Stats are a Reconciler's counters.
type Stats struct {
	Mappings   uint64 // calls the kernel holds now
	Applies    uint64 // successful Apply and Replace calls
	Errors     uint64 // refused Apply, Replace and Counters calls
	Generation uint64 // of the desired state last applied
	// Full: converges that read the whole desired state (start, re-sync,
	// the change log overrun, the backstop) rather than what changed.
	Full uint64
	// Failing: the kernel refused the last update or counter read and
	// every re-sync since (GRE of new calls takes the queues meanwhile).
	Failing bool
	PacketsIn, PacketsOut,
	BytesIn, BytesOut uint64 // translated by the kernel, read from its counters
}

// maxCounterGap is the longest time between two counter reads, whatever
// CountersPerTick says: the mirror keeps the counters' low bits (counts),
// and half their range in a minute is 35 M packets and 4.5 GB (36 Gbit) a
// second for one call, beyond what one PPTP call carries.
const maxCounterGap = time.Minute

// Reconciler converges a Backend to a Source's desired state. Run is its
// only goroutine; Stats may be read from any.
type Reconciler struct {
	cfg     Config
	src     Source
	be      Backend
	log     *zap.Logger
	changed <-chan struct{} // src's signal, ours alone

	// Run's own. The mappings the backend holds are those of mir with
	// its bit (tier t), n of them, sorted by InKey, found by their OutKey
	// through an index built for each counter read (sortOut): a map per
	// key, or pointers, would double the bytes per call and tier. mir is
	// touched with its lock held.
	mir     *Mirror
	t       int
	bit     uint8
	joined  bool
	deltas  bool // be is a DeltaCounters: nothing of its counters is kept
	n       int
	gen     uint64
	failing bool
	ticks   int
	// fullDue: the next converge reads the whole desired state (the
	// backstop, every fullTicks ticks); changes, DesiredChanges' buffer.
	fullDue   bool
	fullTicks int
	changes   []conntrack.GREChange
	at        []int // commit's indexes into mir

	mappings, applies, errs, generation, full atomic.Uint64
	failingNow                                atomic.Bool // failing, for Stats
	pktsIn, pktsOut, bytesIn, bytesOut        atomic.Uint64
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
	if cfg.FullEvery == 0 {
		cfg.FullEvery = 60
	}
	mir := cfg.Mirror
	if mir == nil {
		mir = NewMirror()
	}
	r := &Reconciler{cfg: cfg, src: src, be: be, log: cfg.Log, changed: src.DesiredChanged(), mir: mir}
	if fc, ok := be.(FinalCounter); ok {
		fc.OnDelete(r.final)
	}
	if dc, ok := be.(DeltaCounters); ok {
		r.deltas = dc.CountersAreDeltas()
	}
	return r
}

// final credits a mapping's last counters, read as Apply deletes it
// (within Converge: the mirror's lock is held). It finds the mapping by
// its inbound key either way: the index by OutKey is built per counter
// read.
func (r *Reconciler) final(m conntrack.GREMap, in bool, c Counters) {
	if i, ok := r.mir.exact(m); ok && r.mir.held[i]&r.bit != 0 {
		r.credit(i, in, c, r.cfg.Now())
	}
}

// Backend returns the backend it drives.
func (r *Reconciler) Backend() Backend { return r.be }

// Start puts the desired state in the kernel with Replace; an error means
// the backend could not be programmed at all (the caller may fall back to
// another path).
func (r *Reconciler) Start() error {
	r.mir.mu.Lock()
	defer r.mir.mu.Unlock()
	if !r.joined {
		t, err := r.mir.join()
		if err != nil {
			return err
		}
		r.t, r.bit, r.joined = t, 1<<t, true
	}
	buf := getDesired()
	defer putDesired(buf)
	*buf, r.gen = r.src.Desired((*buf)[:0])
	if err := r.be.Replace(*buf); err != nil {
		r.errs.Add(1)
		r.leave()
		return err
	}
	r.reset(*buf)
	r.applies.Add(1)
	r.full.Add(1)
	return nil
}

// desiredBufs holds the buffers Desired fills (*[]conntrack.GREMap),
// shared by the tiers: one at 10 000 calls is 180 kB, needed only while
// a converge runs, and a pool lets it go when the calls are quiet.
var desiredBufs sync.Pool

func getDesired() *[]conntrack.GREMap {
	if b, ok := desiredBufs.Get().(*[]conntrack.GREMap); ok {
		return b
	}
	return new([]conntrack.GREMap)
}

func putDesired(b *[]conntrack.GREMap) { desiredBufs.Put(b) }

// generationSource is a Source that tells its generation without copying
// the desired state (*conntrack.Table): a converge with nothing new then
// costs nothing.
type generationSource interface{ Generation() uint64 }

// changeSource is a Source that tells which mappings changed since a
// generation (*conntrack.Table, conntrack/changelog.go): a converge then
// costs what changed, not every call. ok false: it cannot tell (the
// reconciler fell behind its log), read Desired whole.
type changeSource interface {
	DesiredChanges(since uint64, dst []conntrack.GREChange) (changes []conntrack.GREChange, gen uint64, ok bool)
}

// Run keeps the kernel converged until ctx ends. Start must have
// succeeded.
func (r *Reconciler) Run(ctx context.Context) {
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	r.log.Info("GRE fast path running", zap.String("path", r.be.Name()), zap.Int("calls", r.n))
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
			if r.fullTicks++; r.cfg.FullEvery > 0 && r.fullTicks >= r.cfg.FullEvery {
				r.fullTicks = 0
				r.fullDue = true
			}
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
	most := max(1, int(maxCounterGap/r.cfg.Tick))
	return min(most, max(1, r.n/r.cfg.CountersPerTick))
}

// Converge applies what changed in the desired state since the last call:
// what the source's change log names, else (no log, or it fell behind it,
// or the backstop is due) a diff of the whole desired state. After a
// failure it replaces the kernel's state whole.
func (r *Reconciler) Converge() {
	if g, ok := r.src.(generationSource); ok && !r.failing && !r.fullDue && g.Generation() == r.gen {
		return
	}
	r.mir.mu.Lock()
	defer r.mir.mu.Unlock()
	if cs, ok := r.src.(changeSource); ok && !r.failing && !r.fullDue && r.convergeChanges(cs) {
		return
	}
	backstop := r.fullDue
	r.fullDue = false
	buf := getDesired()
	defer putDesired(buf)
	desired, gen := r.src.Desired((*buf)[:0])
	*buf = desired
	if gen == r.gen && !r.failing && !backstop {
		return
	}
	r.full.Add(1)
	if r.failing {
		if err := r.be.Replace(desired); err != nil {
			r.errs.Add(1)
			return // logged when it started failing
		}
		r.log.Info("GRE fast path re-synced", zap.String("path", r.be.Name()), zap.Int("calls", len(desired)))
		r.failing = false
		r.failingNow.Store(false)
		r.reset(desired)
		r.done(gen)
		return
	}
	add, del := r.diff(desired)
	if backstop && len(add)+len(del) > 0 {
		// A change the source's log did not name (or one caught between
		// its state and its generation: the log names it next).
		r.log.Debug("GRE fast path backstop found changes", zap.String("path", r.be.Name()),
			zap.Int("added", len(add)), zap.Int("removed", len(del)))
	}
	r.apply(add, del, gen)
}

// convergeChanges applies the changes src names since r.gen; false: it
// cannot tell them.
func (r *Reconciler) convergeChanges(src changeSource) bool {
	changes, gen, ok := src.DesiredChanges(r.gen, r.changes[:0])
	if cap(changes) <= keepBuf { // a burst's buffer goes
		r.changes = changes[:0]
	}
	if !ok {
		return false
	}
	var add, del []conntrack.GREMap
	for _, c := range changes {
		i, held := r.mir.find(InKeyOf(c.Map), r.bit)
		switch {
		case held && c.Live && r.mir.maps[i] == c.Map:
		case held:
			del = append(del, r.mir.maps[i])
			if c.Live {
				add = append(add, c.Map)
			}
		case c.Live:
			add = append(add, c.Map)
		}
	}
	r.apply(add, del, gen)
	return true
}

// keepBuf is the most entries a buffer kept between converges holds
// (of the changes, of indexes): a burst's larger ones are let go, which
// at 10 000 calls would be 20 bytes a call.
const keepBuf = 256

// apply has the backend take add and del, bringing it to generation gen;
// a refusal makes the reconciler failing.
func (r *Reconciler) apply(add, del []conntrack.GREMap, gen uint64) {
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
	r.done(gen)
}

// done records that the backend holds generation gen.
func (r *Reconciler) done(gen uint64) {
	r.gen = gen
	r.generation.Store(gen)
	r.applies.Add(1)
}

// diff returns what to add and remove to turn what the tier holds into
// desired; a mapping whose value changed is removed and added again. The
// mappings it holds still desired are marked in a bit set of the diff's
// own (a bit a mapping, not a mark in each).
func (r *Reconciler) diff(desired []conntrack.GREMap) (add, del []conntrack.GREMap) {
	s := r.mir
	seen := make([]uint64, (len(s.maps)+63)/64)
	for _, m := range desired {
		if i, ok := s.exact(m); ok && s.held[i]&r.bit != 0 {
			seen[i/64] |= 1 << (i % 64)
		} else {
			add = append(add, m)
		}
	}
	for i := range s.maps {
		if s.held[i]&r.bit != 0 && seen[i/64]&(1<<(i%64)) == 0 {
			del = append(del, s.maps[i])
		}
	}
	return add, del
}

// commit records that the backend took add and del: a mapping another
// tier holds gains this one's bit, counting afresh; one no tier holds
// any more goes.
func (r *Reconciler) commit(add, del []conntrack.GREMap) {
	s := r.mir
	r.at = r.at[:0]
	for _, m := range del {
		if i, ok := s.find(InKeyOf(m), r.bit); ok {
			s.held[i] &^= r.bit
			s.setLast(r.t, i, counts{})
			r.n--
			r.at = append(r.at, i)
		}
		r.report(m, false)
	}
	n := 0
	for _, m := range add {
		r.report(m, true)
		if i, ok := s.exact(m); ok {
			if s.held[i]&r.bit == 0 {
				r.n++
			}
			s.held[i] |= r.bit
			s.setLast(r.t, i, counts{})
		} else {
			add[n] = m
			n++
		}
	}
	slices.Sort(r.at)
	r.at = slices.DeleteFunc(slices.Compact(r.at), func(i int) bool { return s.held[i] != 0 })
	s.remove(r.at)
	fresh := add[:n]
	slices.SortFunc(fresh, cmpMapIn)
	fresh = slices.CompactFunc(fresh, func(a, b conntrack.GREMap) bool { return InKeyOf(a) == InKeyOf(b) })
	r.at = s.insert(fresh, r.bit, r.at)
	r.n += len(fresh)
	if cap(r.at) > keepBuf {
		r.at = nil
	}
	r.mappings.Store(uint64(r.n))
}

// leave gives the tier's slot in the mirror back.
func (r *Reconciler) leave() {
	if r.joined {
		r.mir.leave(r.t)
		r.joined, r.n = false, 0
	}
}

// outEntry is a mapping's OutKey as two numbers (outOrder), the second
// with its index in the mirror in the low 32 bits.
type outEntry struct{ hi, lo uint64 }

func outOrder(k OutKey) (hi, lo uint64) {
	return uint64(binary.BigEndian.Uint32(k.Inside[:]))<<32 | uint64(binary.BigEndian.Uint32(k.Peer[:])), uint64(k.PeerID) << 32
}

// sortOut returns the index by OutKey of the tier's mappings, for out.
// It is built for each counter read and dropped after it, not kept nor
// pooled: that spares 4 bytes a call and tier of live heap (a pool's
// buffer survives the first GC), and at 10 000 calls a sort of plain
// numbers costs less than the lookups of one read
// (BenchmarkReadCounters).
func (r *Reconciler) sortOut() []outEntry {
	b := make([]outEntry, 0, r.n)
	for i, m := range r.mir.maps {
		if r.mir.held[i]&r.bit != 0 {
			hi, lo := outOrder(OutKeyOf(m))
			b = append(b, outEntry{hi, lo | uint64(i)})
		}
	}
	slices.SortFunc(b, func(x, y outEntry) int {
		if c := cmp.Compare(x.hi, y.hi); c != 0 {
			return c
		}
		return cmp.Compare(x.lo, y.lo)
	})
	return b
}

// out finds the index of k's mapping through byOut (sortOut).
func out(byOut []outEntry, k OutKey) (int, bool) {
	hi, lo := outOrder(k)
	j, ok := slices.BinarySearchFunc(byOut, k, func(e outEntry, _ OutKey) int {
		if c := cmp.Compare(e.hi, hi); c != 0 {
			return c
		}
		return cmp.Compare(e.lo>>32, lo>>32)
	})
	if !ok {
		return 0, false
	}
	return int(uint32(byOut[j].lo)), true
}

// inOrder is k as two numbers, compared in turn: the mirror's order.
func inOrder(k InKey) (uint64, uint32) {
	return uint64(binary.BigEndian.Uint32(k.Peer[:]))<<16 | uint64(k.OuterID), binary.BigEndian.Uint32(k.Public[:])
}

func cmpIn(a, b InKey) int {
	ahi, alo := inOrder(a)
	bhi, blo := inOrder(b)
	if c := cmp.Compare(ahi, bhi); c != 0 {
		return c
	}
	return cmp.Compare(alo, blo)
}

func cmpMapIn(a, b conntrack.GREMap) int { return cmpIn(InKeyOf(a), InKeyOf(b)) }

func (r *Reconciler) report(m conntrack.GREMap, entered bool) {
	if r.cfg.OnMapping != nil {
		r.cfg.OnMapping(m, entered)
	}
}

// reset records that the backend holds exactly desired (after Replace),
// counting afresh; OnMapping hears only the mappings that changed.
func (r *Reconciler) reset(desired []conntrack.GREMap) {
	if r.cfg.OnMapping != nil {
		add, del := r.diff(desired)
		for _, m := range del {
			r.report(m, false)
		}
		for _, m := range add {
			r.report(m, true)
		}
	}
	r.mir.drop(r.t)
	r.n = 0
	on := r.cfg.OnMapping
	r.cfg.OnMapping = nil // reported above
	r.commit(desired, nil)
	r.cfg.OnMapping = on
}

// ReadCounters reads the kernel's per-call counters and gives the calls
// what it translated since the last read.
//
// It holds the mirror's lock only while it credits a key: another tier
// converges meanwhile (moving mappings, never this tier's, nor their
// counters), so the index by OutKey is built again once they moved.
func (r *Reconciler) ReadCounters() {
	if r.failing || r.n == 0 {
		return
	}
	now, s := r.cfg.Now(), r.mir
	var byOut []outEntry // sorted at the first outbound key
	var moves uint64
	err := r.be.Counters(func(k InKey, c Counters) {
		if r.deltas && c.Packets == 0 && c.Bytes == 0 {
			return // nothing to credit, nothing to keep
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if i, ok := s.find(k, r.bit); ok {
			r.credit(i, true, c, now)
		}
	}, func(k OutKey, c Counters) {
		if r.deltas && c.Packets == 0 && c.Bytes == 0 {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if byOut == nil || moves != s.moves {
			byOut, moves = r.sortOut(), s.moves
		}
		if i, ok := out(byOut, k); ok {
			r.credit(i, false, c, now)
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

// credit gives the call of the mirror's mapping i what the kernel
// translated (c: its counters now, in: towards the inside end) since the
// last read; from a DeltaCounters backend c is that already. With nothing
// new it says nothing: the kernel's last-seen time moves only with a
// packet. Bytes alone are credited too: a read may fall between a
// packet's two atomic adds (packets, then bytes), its bytes then come
// with the next read.
func (r *Reconciler) credit(i int, in bool, c Counters, now time.Time) {
	dp, db := c.Packets, c.Bytes
	if !r.deltas {
		d := dirOut
		if in {
			d = dirIn
		}
		a := r.mir.last(r.t, i)
		dp, db = a.moved(d, c)
		a.keep(d, c)
		r.mir.setLast(r.t, i, a)
	}
	if dp == 0 && db == 0 {
		return
	}
	seen := c.Last
	if seen.IsZero() {
		seen = now
	}
	r.src.FastPathCounters(r.mir.maps[i], in, dp, db, seen)
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
	r.mir.mu.Lock()
	r.leave()
	r.mir.mu.Unlock()
	return r.be.Close(remove)
}

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	return Stats{Mappings: r.mappings.Load(), Applies: r.applies.Load(), Errors: r.errs.Load(),
		Generation: r.generation.Load(), Full: r.full.Load(), Failing: r.failingNow.Load(), PacketsIn: r.pktsIn.Load(), PacketsOut: r.pktsOut.Load(),
		BytesIn: r.bytesIn.Load(), BytesOut: r.bytesOut.Load()}
}
