package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

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
	calls  *ebpf.Map          // both directions of every call
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

var _ fastpath.Backend = (*Backend)(nil)

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
	coll, err := b.load()
	if err != nil {
		return nil, err
	}
	b.prog, b.calls, b.dev = coll.Programs[ProgName], coll.Maps[MapCallsName], coll.Maps[MapDevName]
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
	return b, nil
}

// load creates the collection, re-using compatible pinned maps; pins
// of another shape are removed and the maps made afresh.
func (b *Backend) load() (*ebpf.Collection, error) {
	spec := collectionSpec(uint32(b.cfg.MaxCalls), true)
	opts := ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: b.cfg.PinDir}}
	for _, n := range []string{oldMapInName, oldMapOutName} {
		_ = os.Remove(filepath.Join(b.cfg.PinDir, n)) // an older version's
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		b.log.Info("bpf: pinned maps differ from this configuration, replacing them", zap.Error(err))
		for _, n := range []string{MapCallsName, MapDevName} {
			_ = os.Remove(filepath.Join(b.cfg.PinDir, n))
		}
		coll, err = ebpf.NewCollectionWithOptions(spec, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("bpf: load program: %w", err)
	}
	return coll, nil
}

func (b *Backend) closeFDs() {
	for _, l := range b.tcx {
		l.Close()
	}
	b.prog.Close()
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

// Replace implements fastpath.Backend: the map holds exactly maps
// afterwards; entries that already translate the same way keep their
// counters.
func (b *Backend) Replace(maps []conntrack.GREMap) error {
	want := make(map[key]value, 2*len(maps))
	for _, m := range maps {
		want[inKey(m)] = inValue(m)
		want[outKey(m)] = outValue(m)
	}
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
		if err := b.calls.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("bpf: delete from %s: %w", MapCallsName, err))
		}
	}
	b.addMissing(maps, want, &errs)
	return errs.err()
}

// addMissing adds the entries of want known to be missing (this
// goroutine is the only writer), a call's two together in the order of
// maps, so that a full map leaves whole calls out. It goes in batches
// where the kernel has them; after a batch fails (a full map, an old
// kernel) its entries are added one by one, which keeps what went in and
// names the error. Batches take no BPF_NOEXIST: the kernel allows only
// BPF_F_LOCK there.
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
				keys, vals = append(keys, k), append(vals, v)
				delete(want, k)
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
	var clk Clock
	if b.onDelete != nil && len(del) > 0 {
		clk, _ = Now()
	}
	for _, m := range del {
		if v, ok := b.del(&errs, inKey(m), inValue(m)); ok && b.onDelete != nil {
			b.onDelete(m, true, v.counters(clk))
		}
		if v, ok := b.del(&errs, outKey(m), outValue(m)); ok && b.onDelete != nil {
			b.onDelete(m, false, v.counters(clk))
		}
	}
	for _, m := range add {
		errs.add(b.put(inKey(m), inValue(m)))
		errs.add(b.put(outKey(m), outValue(m)))
	}
	return errs.err()
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

// del removes k if it still maps to v (another mapping may have taken the
// key since) and returns its last value.
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
// deletes, read just before the deletion (so the call's last packets are
// not lost with the entry, but for those counted in the microseconds
// between the two syscalls). fn runs on the caller's goroutine.
func (b *Backend) OnDelete(fn func(m conntrack.GREMap, in bool, c fastpath.Counters)) {
	b.onDelete = fn
}

// put adds k -> v with BPF_NOEXIST, so that a live entry keeps its
// counters; an entry with another mapping is deleted first.
func (b *Backend) put(k key, v value) error {
	err := b.calls.Update(&k, &v, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		var old value
		if err = b.calls.Lookup(&k, &old); err == nil && sameMapping(old, v) {
			return nil
		}
		if err = b.calls.Delete(&k); err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
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

// Counters implements fastpath.Backend: every entry's counters, Last
// converted from the kernel's monotonic clock to wall time.
func (b *Backend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	clk, err := Now()
	if err != nil {
		return err
	}
	err = b.walk(func(k key, v value) {
		if v.Dir == dirIn {
			in(k.in(), v.counters(clk))
		} else {
			out(k.out(), v.counters(clk))
		}
	})
	if err != nil {
		return fmt.Errorf("bpf: read map %s: %w", MapCallsName, err)
	}
	return nil
}

// Now reads CLOCK_MONOTONIC and the wall clock together.
func Now() (Clock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return Clock{}, fmt.Errorf("bpf: clock_gettime: %w", err)
	}
	return Clock{Mono: ts.Nano(), Wall: time.Now()}, nil
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
