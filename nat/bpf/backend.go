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
	cfg     Config
	log     *zap.Logger
	prog    *ebpf.Program
	in, out *ebpf.Map
	dev     *ebpf.Map         // ifindexes the program may redirect to: those it is attached to
	tcx     map[int]link.Link // ifindex -> pinned tcx link
	cls     map[int]bool      // ifindexes with our cls_bpf filter
	useTCX  bool
	ncpu    int
	scratch []value // one value per CPU
	keys    []key   // Counters' and Replace's batch buffers
	vals    []value
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
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("bpf: %w", err)
	}
	if err := ensurePinDir(cfg.PinDir); err != nil {
		return nil, err
	}
	b := &Backend{cfg: cfg, log: cfg.Log, tcx: map[int]link.Link{}, cls: map[int]bool{}, ncpu: ncpu,
		scratch: make([]value, ncpu), useTCX: !cfg.ForceClsBPF && haveTCX()}
	coll, err := b.load()
	if err != nil {
		return nil, err
	}
	b.prog, b.in, b.out, b.dev = coll.Programs[ProgName], coll.Maps[MapInName], coll.Maps[MapOutName], coll.Maps[MapDevName]
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
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		b.log.Info("bpf: pinned maps differ from this configuration, replacing them", zap.Error(err))
		for _, n := range []string{MapInName, MapOutName, MapDevName} {
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
	b.in.Close()
	b.out.Close()
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
	wantIn := make(map[key]value, len(maps))
	wantOut := make(map[key]value, len(maps))
	for _, m := range maps {
		wantIn[inKey(m)] = inValue(m)
		wantOut[outKey(m)] = outValue(m)
	}
	return errors.Join(b.converge(b.in, MapInName, wantIn), b.converge(b.out, MapOutName, wantOut))
}

// converge deletes what m holds that want does not (or maps otherwise),
// then adds what is missing.
func (b *Backend) converge(m *ebpf.Map, name string, want map[key]value) error {
	var stale []key
	err := b.walk(m, func(k key, cpus []value) {
		if w, ok := want[k]; ok && sameMapping(w, cpus[0]) {
			delete(want, k)
			return
		}
		stale = append(stale, k)
	})
	if err != nil {
		return fmt.Errorf("bpf: read map %s: %w", name, err)
	}
	var errs firstErrors
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("bpf: delete from %s: %w", name, err))
		}
	}
	b.addMissing(m, name, want, &errs)
	return errs.err()
}

// addMissing adds entries known to be missing (this goroutine is the only
// writer), in batches where the kernel has them; after a batch fails (a
// full map, an old kernel) its keys are added one by one, which keeps
// what went in and names the error. Batches take no BPF_NOEXIST: the
// kernel allows only BPF_F_LOCK there.
func (b *Backend) addMissing(m *ebpf.Map, name string, want map[key]value, errs *firstErrors) {
	keys := make([]key, 0, batch)
	vals := make([]value, 0, batch*b.ncpu)
	flush := func() {
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			for i := range keys {
				errs.add(b.put(m, name, keys[i], vals[i*b.ncpu]))
			}
		}
		keys, vals = keys[:0], vals[:0]
	}
	for k, v := range want {
		keys = append(keys, k)
		for range b.ncpu {
			vals = append(vals, v)
		}
		if len(keys) == batch {
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
		if c, ok := b.del(&errs, b.in, MapInName, inKey(m), inValue(m)); ok && b.onDelete != nil {
			b.onDelete(m, true, c.counters(clk))
		}
		if c, ok := b.del(&errs, b.out, MapOutName, outKey(m), outValue(m)); ok && b.onDelete != nil {
			b.onDelete(m, false, c.counters(clk))
		}
	}
	for _, m := range add {
		errs.add(b.put(b.in, MapInName, inKey(m), inValue(m)))
		errs.add(b.put(b.out, MapOutName, outKey(m), outValue(m)))
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
// key since).
func (b *Backend) del(errs *firstErrors, m *ebpf.Map, name string, k key, v value) (final percpu, ok bool) {
	err := m.Lookup(&k, b.scratch)
	if errors.Is(err, ebpf.ErrKeyNotExist) || err == nil && !sameMapping(b.scratch[0], v) {
		return nil, false
	}
	if err == nil {
		err = m.Delete(&k)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs.add(fmt.Errorf("bpf: delete from %s: %w", name, err))
		return nil, false
	}
	return b.scratch, err == nil
}

// percpu is one entry's values, one per CPU.
type percpu []value

func (p percpu) counters(clk Clock) fastpath.Counters {
	pk, by, last := sum(p)
	return fastpath.Counters{Packets: pk, Bytes: by, Last: clk.WallOf(last)}
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
func (b *Backend) put(m *ebpf.Map, name string, k key, v value) error {
	for i := range b.scratch {
		b.scratch[i] = v
	}
	err := m.Update(&k, b.scratch, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		if err = m.Lookup(&k, b.scratch); err == nil && sameMapping(b.scratch[0], v) {
			return nil
		}
		for i := range b.scratch {
			b.scratch[i] = v
		}
		if err = m.Delete(&k); err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
			err = m.Update(&k, b.scratch, ebpf.UpdateNoExist)
		}
	}
	if errors.Is(err, unix.E2BIG) {
		return fmt.Errorf("bpf: map %s is full (max calls %d)", name, b.cfg.MaxCalls)
	}
	if err != nil {
		return fmt.Errorf("bpf: add to %s: %w", name, err)
	}
	return nil
}

// Counters implements fastpath.Backend: every entry's counters summed
// over the CPUs; Last converted from ktime to wall time.
func (b *Backend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	clk, err := Now()
	if err != nil {
		return err
	}
	if err := b.walk(b.in, func(k key, cpus []value) { in(k.in(), percpu(cpus).counters(clk)) }); err != nil {
		return fmt.Errorf("bpf: read map %s: %w", MapInName, err)
	}
	if err := b.walk(b.out, func(k key, cpus []value) { out(k.out(), percpu(cpus).counters(clk)) }); err != nil {
		return fmt.Errorf("bpf: read map %s: %w", MapOutName, err)
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

// walk calls fn with every entry of m and its per-CPU values (valid only
// during the call), in batches where the kernel has them (5.6+), else
// key by key.
func (b *Backend) walk(m *ebpf.Map, fn func(key, []value)) error {
	if b.keys == nil {
		b.keys = make([]key, batch)
		b.vals = make([]value, batch*b.ncpu)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, b.keys, b.vals, nil)
		for i := range n {
			fn(b.keys[i], b.vals[i*b.ncpu:(i+1)*b.ncpu])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return b.iterate(m, fn)
		case err != nil:
			return err
		}
	}
}

func (b *Backend) iterate(m *ebpf.Map, fn func(key, []value)) error {
	var k key
	var cpus []value
	it := m.Iterate()
	for it.Next(&k, &cpus) {
		fn(k, cpus)
	}
	return it.Err()
}
