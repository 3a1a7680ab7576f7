package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// DefaultPinDir is where the program, its maps and its tcx links are
// pinned, so that they keep translating while the daemon restarts.
const DefaultPinDir = "/sys/fs/bpf/pptpgw"

// progPin is the program's pin under the pin directory; the maps are
// pinned under their names, tcx links as tcx_<ifindex>.
const progPin = "prog"

// Config configures a Backend.
type Config struct {
	// PinDir holds the pins (DefaultPinDir when empty). bpffs is mounted
	// on /sys/fs/bpf when it is missing there.
	PinDir string
	// MaxCalls sizes each map (--max-calls); a full map fails Apply.
	MaxCalls int
	// ForceClsBPF attaches with cls_bpf on clsact even where the kernel
	// has tcx.
	ForceClsBPF bool
	Log         *zap.Logger
	// NetNS, when not 0, is a network namespace file descriptor whose
	// interfaces to attach to instead of the caller's (tests).
	NetNS int
}

// Backend is the tc-eBPF fast path, a fastpath.Backend. Its methods must
// not be called concurrently (the Reconciler calls it from one goroutine).
type Backend struct {
	cfg    Config
	log    *zap.Logger
	prog   *ebpf.Program
	line   *ebpf.Map          // the call lines: both directions of every call (lines.go)
	lines  *lines             // line, mapped into memory
	calls  *ebpf.Map          // the spill: calls whose line is full
	wraps  map[key]wrap       // the spill's counters as last read (spillCounters)
	dev    *ebpf.Map          // by ifindex: the interfaces it is attached to (and may redirect to)
	devs   map[uint32]devInfo // what dev holds (its non-zero entries), nil until read
	tcx    map[int]link.Link  // ifindex -> pinned tcx link
	cls    map[int]bool       // ifindexes with our cls_bpf filter
	useTCX bool
	keys   []key // Counters' and Replace's batch buffers
	vals   []value
	// onDelete hears the last counters of deleted mappings.
	onDelete func(m conntrack.GREMap, in bool, c fastpath.Counters)
}

var (
	_ fastpath.Backend       = (*Backend)(nil)
	_ fastpath.DeltaCounters = (*Backend)(nil)
	_ fastpath.FinalCounter  = (*Backend)(nil)
)

// Open loads the program and re-uses the pinned maps when their spec
// matches (else replaces them: a changed --max-calls), and moves every
// attachment an earlier run left (pinned tcx links, cls_bpf filters) to
// the new program without a gap. The kernel keeps translating what the
// maps hold until Replace converges them.
func Open(cfg Config) (*Backend, error) {
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir
	}
	if cfg.MaxCalls <= 0 {
		return nil, fmt.Errorf("bpf: max calls %d: want at least 1", cfg.MaxCalls)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; where
	// it cannot be raised the load fails with a clearer error.
	_ = rlimit.RemoveMemlock()
	if err := ensurePinDir(cfg.PinDir); err != nil {
		return nil, err
	}
	b := &Backend{cfg: cfg, log: cfg.Log, tcx: map[int]link.Link{}, cls: map[int]bool{},
		useTCX: !cfg.ForceClsBPF && haveTCX()}
	coll, adopted, err := b.load()
	if err != nil {
		return nil, err
	}
	b.prog, b.line, b.calls, b.dev = coll.Programs[ProgName], coll.Maps[MapLineName], coll.Maps[MapCallsName], coll.Maps[MapDevName]
	if b.lines, err = mapLines(b.line, adopted); err != nil {
		b.closeFDs()
		return nil, err
	}
	pin := filepath.Join(cfg.PinDir, progPin)
	_ = os.Remove(pin)
	if err := b.prog.Pin(pin); err != nil {
		b.closeFDs()
		return nil, fmt.Errorf("bpf: pin program: %w", err)
	}
	if err := b.adopt(); err != nil {
		b.closeFDs()
		return nil, err
	}
	if adopted {
		b.baseSpill()
	}
	return b, nil
}

// baseSpill takes the adopted spill's counters as read, so that its first
// report is what moved since Open. The lines' counters are what the
// program counted since the previous daemon's last read (a read swaps
// them to zero), and the state file holds the calls' counters as of that
// daemon's last write, which at a clean stop follows its last read: the
// first read here credits exactly what the calls missed. The spill's
// counters are cumulative, and the previous daemon's last read of them
// is gone with it: counting them whole would count the calls' history
// twice, while from here the spilled calls (a percent) lose only what
// they carried between that read and this Open.
func (b *Backend) baseSpill() {
	b.wraps = map[key]wrap{}
	err := b.walk(func(k key, v value) {
		if v.Packets != 0 || v.Byts != 0 {
			b.wraps[k] = wrap{pkts: v.Packets, byts: v.Byts}
		}
	})
	if err != nil {
		b.log.Warn("bpf: read the adopted spill's counters; its first read counts them whole", zap.Error(err))
	}
}

// load creates the collection, re-using compatible pinned maps; pins
// of another shape are removed and the maps made afresh. adopted says
// the call lines come from an earlier run.
func (b *Backend) load() (coll *ebpf.Collection, adopted bool, err error) {
	spec := collectionSpec(uint32(b.cfg.MaxCalls), true)
	opts := ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: b.cfg.PinDir}}
	for _, n := range []string{oldMapInName, oldMapOutName} {
		_ = os.Remove(filepath.Join(b.cfg.PinDir, n)) // an older version's
	}
	_, err = os.Stat(filepath.Join(b.cfg.PinDir, MapLineName))
	adopted = err == nil
	coll, err = ebpf.NewCollectionWithOptions(spec, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		b.log.Info("bpf: pinned maps differ from this configuration, replacing them", zap.Error(err))
		for _, n := range []string{MapLineName, MapCallsName, MapDevName} {
			_ = os.Remove(filepath.Join(b.cfg.PinDir, n))
		}
		adopted = false
		coll, err = ebpf.NewCollectionWithOptions(spec, opts)
	}
	if err != nil {
		return nil, false, fmt.Errorf("bpf: load program: %w", err)
	}
	return coll, adopted, nil
}

func (b *Backend) closeFDs() {
	for _, l := range b.tcx {
		l.Close()
	}
	b.prog.Close()
	_ = b.lines.close()
	b.line.Close()
	b.calls.Close()
	b.dev.Close()
}

// Name implements fastpath.Backend.
func (b *Backend) Name() string { return "bpf" }

// Mode is how the program is attached: "tcx" or "cls_bpf".
func (b *Backend) Mode() string {
	if b.useTCX {
		return "tcx"
	}
	return "cls_bpf"
}

// Program is the loaded program (tests and benchmarks).
func (b *Backend) Program() *ebpf.Program { return b.prog }

// Close implements fastpath.Backend: without remove the pins, links and
// filters stay and keep translating; with remove everything goes.
func (b *Backend) Close(remove bool) error {
	if !remove {
		b.closeFDs()
		return nil
	}
	err := b.SetInterfaces(nil)
	b.closeFDs()
	return errors.Join(err, RemoveIn(b.cfg.PinDir, b.cfg.NetNS))
}

// Remove detaches every attachment of the program and deletes the pins
// under pinDir (DefaultPinDir when empty): `pptpgw rules remove`, with no
// daemon running. Nothing there is fine.
func Remove(pinDir string) error { return RemoveIn(pinDir, 0) }

// RemoveIn is Remove for the interfaces of the network namespace netns
// (a file descriptor; 0: the caller's).
func RemoveIn(pinDir string, netns int) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	var errs []error
	ents, err := os.ReadDir(pinDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range ents {
		if _, ok := tcxPinIndex(e.Name()); ok {
			errs = append(errs, unpinLink(filepath.Join(pinDir, e.Name())))
		}
	}
	errs = append(errs, inNS(netns, removeClsFilters))
	if err := os.RemoveAll(pinDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unpinLink detaches a pinned link and removes its pin.
func unpinLink(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return errors.Join(fmt.Errorf("bpf: %s: %w", path, err), os.Remove(path))
	}
	defer l.Close()
	if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) && !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("bpf: detach %s: %w", path, err)
	}
	return l.Unpin()
}

// Replace implements fastpath.Backend: the maps hold exactly maps
// afterwards; entries that already translate the same way keep their
// counters.
func (b *Backend) Replace(maps []conntrack.GREMap) error {
	want := make(map[key]value, 2*len(maps))
	for _, m := range maps {
		want[inKey(m)] = inValue(m)
		want[outKey(m)] = outValue(m)
	}
	l := b.lines
	for s := range l.slots() {
		if !l.used(s) {
			continue
		}
		k, v := l.key(s), l.value(s)
		if w, ok := want[k]; ok && sameMapping(w, v) && int(lineOf(k, l.shift)) == s/2 {
			delete(want, k)
			continue
		}
		l.empty(s)
	}
	// What the lines hold is no longer wanted in the spill: a copy there
	// would count twice.
	var stale []key
	err := b.walk(func(k key, v value) {
		if w, ok := want[k]; ok && sameMapping(w, v) {
			delete(want, k)
			return
		}
		stale = append(stale, k)
	})
	if err != nil {
		return fmt.Errorf("bpf: read map %s: %w", MapCallsName, err)
	}
	var errs firstErrors
	for _, k := range stale {
		delete(b.wraps, k)
		if err := b.calls.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("bpf: delete from %s: %w", MapCallsName, err))
		}
	}
	b.addMissing(maps, want, &errs)
	return errs.err()
}

// addMissing adds the entries of want known to be missing (this
// goroutine is the only writer), a call's two together in the order of
// maps, so that a full map leaves whole calls out: into their lines, or
// the spill when a line is full. The spill takes batches where the kernel
// has them; after a batch fails (a full map, an old kernel) its entries
// are added one by one, which keeps what went in and names the error.
// Batches take no BPF_NOEXIST: the kernel allows only BPF_F_LOCK there.
func (b *Backend) addMissing(maps []conntrack.GREMap, want map[key]value, errs *firstErrors) {
	keys := make([]key, 0, batch)
	vals := make([]value, 0, batch)
	flush := func() {
		if _, err := b.calls.BatchUpdate(keys, vals, nil); err != nil {
			for i := range keys {
				errs.add(b.put(keys[i], vals[i]))
			}
		}
		keys, vals = keys[:0], vals[:0]
	}
	for _, m := range maps {
		for _, k := range [2]key{inKey(m), outKey(m)} {
			if v, ok := want[k]; ok {
				delete(want, k)
				if !b.lines.put(k, v) {
					keys, vals = append(keys, k), append(vals, v)
				}
			}
		}
		if len(keys) >= batch-1 {
			flush()
		}
	}
	if len(keys) > 0 {
		flush()
	}
}

// Apply implements fastpath.Backend: deletions first (so that a full map
// makes room), then additions. An entry that already translates the same
// way is left alone, with its counters; a changed one is replaced.
func (b *Backend) Apply(add, del []conntrack.GREMap) error {
	var errs firstErrors
	for _, m := range del {
		if c, ok := b.remove(&errs, inKey(m), inValue(m)); ok && b.onDelete != nil {
			b.onDelete(m, true, c)
		}
		if c, ok := b.remove(&errs, outKey(m), outValue(m)); ok && b.onDelete != nil {
			b.onDelete(m, false, c)
		}
	}
	for _, m := range add {
		errs.add(b.add(inKey(m), inValue(m)))
		errs.add(b.add(outKey(m), outValue(m)))
	}
	return errs.err()
}

// add puts k -> v into its line, or the spill when the line is full.
func (b *Backend) add(k key, v value) error {
	if s, ok := b.lines.find(k); ok {
		if sameMapping(b.lines.value(s), v) {
			return nil
		}
		b.lines.empty(s)
	}
	if b.lines.put(k, v) {
		return nil
	}
	return b.put(k, v)
}

// remove deletes k if it still maps to v (another mapping may have taken
// the key since) and returns its last counters.
func (b *Backend) remove(errs *firstErrors, k key, v value) (fastpath.Counters, bool) {
	if s, ok := b.lines.find(k); ok {
		if !sameMapping(b.lines.value(s), v) {
			return fastpath.Counters{}, false
		}
		p, by := b.lines.empty(s)
		return fastpath.Counters{Packets: p, Bytes: by}, true
	}
	final, ok := b.del(errs, k, v)
	if !ok {
		return fastpath.Counters{}, false
	}
	c := b.spillCounters(k, final)
	delete(b.wraps, k)
	return c, true
}

// firstErrors keeps the first few errors of a batch of map updates and
// counts the rest: a full map fails every addition alike.
type firstErrors struct {
	errs []error
	more int
}

func (f *firstErrors) add(err error) {
	if err == nil {
		return
	}
	if len(f.errs) >= 2 || slices.ContainsFunc(f.errs, func(e error) bool { return e.Error() == err.Error() }) {
		f.more++
		return
	}
	f.errs = append(f.errs, err)
}

func (f *firstErrors) err() error {
	if f.more > 0 {
		f.errs = append(f.errs, fmt.Errorf("bpf: and %d more map update errors", f.more))
	}
	return errors.Join(f.errs...)
}

// del removes k from the spill if it still maps to v and returns its
// last value.
func (b *Backend) del(errs *firstErrors, k key, v value) (final value, ok bool) {
	err := b.calls.Lookup(&k, &final)
	if errors.Is(err, ebpf.ErrKeyNotExist) || err == nil && !sameMapping(final, v) {
		return value{}, false
	}
	if err == nil {
		err = b.calls.Delete(&k)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs.add(fmt.Errorf("bpf: delete from %s: %w", MapCallsName, err))
		return value{}, false
	}
	return final, err == nil
}

// OnDelete sets fn to hear the final counters of every mapping Apply
// deletes (with CountersAreDeltas, what moved since the last read), read
// just as the entry goes (so the call's last packets are
// not lost with it, but for those counted in the microseconds between
// the two). fn runs on the caller's goroutine.
func (b *Backend) OnDelete(fn func(m conntrack.GREMap, in bool, c fastpath.Counters)) {
	b.onDelete = fn
}

// put adds k -> v to the spill with BPF_NOEXIST, so that a live entry
// keeps its counters; an entry with another mapping is deleted first.
func (b *Backend) put(k key, v value) error {
	err := b.calls.Update(&k, &v, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		var old value
		if err = b.calls.Lookup(&k, &old); err == nil && sameMapping(old, v) {
			return nil
		}
		if err = b.calls.Delete(&k); err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
			delete(b.wraps, k)
			err = b.calls.Update(&k, &v, ebpf.UpdateNoExist)
		}
	}
	if errors.Is(err, unix.E2BIG) {
		return fmt.Errorf("bpf: map %s is full (max calls %d)", MapCallsName, b.cfg.MaxCalls)
	}
	if err != nil {
		return fmt.Errorf("bpf: add to %s: %w", MapCallsName, err)
	}
	return nil
}

// CountersAreDeltas implements fastpath.DeltaCounters: Counters and
// OnDelete report what moved since the last report (lines.take; the
// spill by difference).
func (b *Backend) CountersAreDeltas() bool { return true }

// Counters implements fastpath.Backend: every entry's counters,
// cumulative or since the last read (CountersAreDeltas). Last is zero:
// the reconciler stamps what is new when it reads it.
func (b *Backend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	report := func(k key, dir uint8, c fastpath.Counters) {
		if dir == dirIn {
			in(k.in(), c)
		} else {
			out(k.out(), c)
		}
	}
	l := b.lines
	for s := range l.slots() {
		if !l.used(s) {
			continue
		}
		p, by := l.take(s)
		report(l.key(s), l.dir(s), fastpath.Counters{Packets: p, Bytes: by})
	}
	err := b.walk(func(k key, v value) { report(k, v.Dir, b.spillCounters(k, v)) })
	if err != nil {
		return fmt.Errorf("bpf: read map %s: %w", MapCallsName, err)
	}
	return nil
}

// wrap is a spill entry's counters as last read. Kept per spilled key (a
// percent of them): the program's adds to a hash map's value cannot be
// swapped away from userspace.
type wrap struct {
	pkts uint32
	byts uint64
}

// spillCounters is what the spill's entry k counted since the last read:
// the packets modulo 2^32, and all of it if its bytes went back (another
// entry under that key). An entry that never counted keeps nothing.
func (b *Backend) spillCounters(k key, v value) fastpath.Counters {
	w, had := b.wraps[k]
	if !had && v.Packets == 0 && v.Byts == 0 {
		return fastpath.Counters{}
	}
	if b.wraps == nil {
		b.wraps = map[key]wrap{}
	}
	c := fastpath.Counters{Packets: uint64(v.Packets - w.pkts), Bytes: v.Byts - w.byts}
	if v.Byts < w.byts {
		c = fastpath.Counters{Packets: uint64(v.Packets), Bytes: v.Byts}
	}
	b.wraps[k] = wrap{pkts: v.Packets, byts: v.Byts}
	return c
}

// batch is how many entries one batch lookup reads.
const batch = 256

// walk calls fn with every entry of the map, in batches where the kernel
// has them (5.6+), else key by key.
func (b *Backend) walk(fn func(key, value)) error {
	if b.keys == nil {
		b.keys = make([]key, batch)
		b.vals = make([]value, batch)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := b.calls.BatchLookup(&cursor, b.keys, b.vals, nil)
		for i := range n {
			fn(b.keys[i], b.vals[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return b.iterate(fn)
		case err != nil:
			return err
		}
	}
}

func (b *Backend) iterate(fn func(key, value)) error {
	var k key
	var v value
	it := b.calls.Iterate()
	for it.Next(&k, &v) {
		fn(k, v)
	}
	return it.Err()
}
