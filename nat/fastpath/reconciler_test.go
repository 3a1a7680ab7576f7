package fastpath_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/fastpath/fastpathtest"
)

// memBackend is a kernel in memory: the mappings it holds and their
// counters, with a switch to refuse the next calls.
type memBackend struct {
	held     map[fastpath.InKey]conntrack.GREMap
	in       map[fastpath.InKey]fastpath.Counters
	out      map[fastpath.OutKey]fastpath.Counters
	fail     error
	onDelete func(conntrack.GREMap, bool, fastpath.Counters)
	replaces int
	applies  [][2]int // len(add), len(del)
	closed   bool
}

func newMem() *memBackend {
	return &memBackend{held: map[fastpath.InKey]conntrack.GREMap{}, in: map[fastpath.InKey]fastpath.Counters{}, out: map[fastpath.OutKey]fastpath.Counters{}}
}

func (b *memBackend) Name() string { return "mem" }
func (b *memBackend) Replace(maps []conntrack.GREMap) error {
	if b.fail != nil {
		return b.fail
	}
	b.replaces++
	clear(b.held)
	for _, m := range maps {
		b.held[fastpath.InKeyOf(m)] = m
	}
	return nil
}
func (b *memBackend) Apply(add, del []conntrack.GREMap) error {
	if b.fail != nil {
		return b.fail
	}
	b.applies = append(b.applies, [2]int{len(add), len(del)})
	for _, m := range del {
		if _, ok := b.held[fastpath.InKeyOf(m)]; !ok {
			panic("delete of a mapping never added")
		}
		if b.onDelete != nil {
			b.onDelete(m, true, b.in[fastpath.InKeyOf(m)])
			b.onDelete(m, false, b.out[fastpath.OutKeyOf(m)])
		}
		delete(b.held, fastpath.InKeyOf(m))
	}
	for _, m := range add {
		if _, ok := b.held[fastpath.InKeyOf(m)]; ok {
			panic("add over a held mapping")
		}
		b.held[fastpath.InKeyOf(m)] = m
	}
	return nil
}
func (b *memBackend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	if b.fail != nil {
		return b.fail
	}
	for k, c := range b.in {
		in(k, c)
	}
	for k, c := range b.out {
		out(k, c)
	}
	return nil
}
func (b *memBackend) Close(remove bool) error { b.closed = true; return nil }

// finalBackend reads a mapping's last counters as it deletes it.
type finalBackend struct{ *memBackend }

func (b finalBackend) OnDelete(fn func(conntrack.GREMap, bool, fastpath.Counters)) { b.onDelete = fn }

func (b *memBackend) keys() []uint16 {
	var ids []uint16
	for k := range b.held {
		ids = append(ids, k.OuterID)
	}
	slices.Sort(ids)
	return ids
}

func call(outer uint16) conntrack.GREMap {
	return conntrack.GREMap{Peer: conntrack.Addr{203, 0, 113, 5}, OuterID: outer, Public: conntrack.Addr{198, 51, 100, 1},
		Inside: conntrack.Addr{192, 168, 1, 10}, InsideID: outer + 1, PeerID: outer + 2}
}

// TestConverge: the kernel follows the desired state with the fewest
// changes, a changed mapping is removed and added again, an unchanged
// generation costs nothing, and a refused update is followed by a whole
// Replace once the kernel takes it again.
func TestConverge(t *testing.T) {
	src, be := fastpathtest.New(call(1), call(2)), newMem()
	r := fastpath.New(src, be, fastpath.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if got := be.keys(); !slices.Equal(got, []uint16{1, 2}) || be.replaces != 1 {
		t.Fatalf("after Start: %v, %d replaces", got, be.replaces)
	}
	moved := call(2)
	moved.Inside = conntrack.Addr{192, 168, 1, 11}
	src.Set(call(1), moved, call(3))
	r.Converge()
	if got := be.keys(); !slices.Equal(got, []uint16{1, 2, 3}) || be.held[fastpath.InKeyOf(moved)] != moved {
		t.Errorf("after a change: %v", be.held)
	}
	if want := [][2]int{{2, 1}}; !slices.Equal(be.applies, want) {
		t.Errorf("applies %v, want %v", be.applies, want)
	}
	r.Converge() // same generation
	if len(be.applies) != 1 {
		t.Errorf("an unchanged generation applied again: %v", be.applies)
	}
	be.fail = errors.New("ENOBUFS")
	src.Set(call(1))
	r.Converge()
	r.Converge()
	if st := r.Stats(); st.Errors != 2 {
		t.Errorf("errors %d, want 2", st.Errors)
	}
	be.fail = nil
	r.Converge()
	if got := be.keys(); !slices.Equal(got, []uint16{1}) || be.replaces != 2 {
		t.Errorf("after recovery: %v, %d replaces", got, be.replaces)
	}
	if st := r.Stats(); st.Mappings != 1 {
		t.Errorf("mappings %d, want 1", st.Mappings)
	}
}

// TestCountersFailure: a failed counter read (the kernel objects gone)
// makes the reconciler failing, and the next Converge puts the whole
// desired state back even though nothing changed.
func TestCountersFailure(t *testing.T) {
	src, be := fastpathtest.New(call(1)), newMem()
	r := fastpath.New(src, be, fastpath.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	be.fail = errors.New("no such file or directory")
	clear(be.held) // nft delete table
	r.ReadCounters()
	if st := r.Stats(); !st.Failing || st.Errors != 1 {
		t.Fatalf("after a failed read: %+v", st)
	}
	be.fail = nil
	r.Converge()
	if got := be.keys(); !slices.Equal(got, []uint16{1}) || be.replaces != 2 || r.Stats().Failing {
		t.Errorf("after the re-sync: %v, %d replaces, %+v", got, be.replaces, r.Stats())
	}
}

// TestCounters: the calls are credited the difference since the last
// read, with the kernel's last-use time or, without one, the read's;
// a re-created entry counts from zero again.
func TestCounters(t *testing.T) {
	now := time.Unix(1000, 0)
	src, be := fastpathtest.New(call(1)), newMem()
	r := fastpath.New(src, be, fastpath.Config{Now: func() time.Time { return now }})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	c := call(1)
	kernelLast := time.Unix(990, 0)
	be.in[fastpath.InKeyOf(c)] = fastpath.Counters{Packets: 10, Bytes: 1000, Last: kernelLast}
	be.out[fastpath.OutKeyOf(c)] = fastpath.Counters{Packets: 4, Bytes: 400}
	r.ReadCounters()
	be.in[fastpath.InKeyOf(c)] = fastpath.Counters{Packets: 15, Bytes: 1500, Last: kernelLast.Add(time.Second)}
	r.ReadCounters()
	be.out[fastpath.OutKeyOf(c)] = fastpath.Counters{Packets: 1, Bytes: 100} // re-created
	r.ReadCounters()
	in, out := src.Credited(c, true), src.Credited(c, false)
	if in.Packets != 15 || in.Bytes != 1500 || !in.Last.Equal(kernelLast.Add(time.Second)) {
		t.Errorf("in credited %+v", in)
	}
	if out.Packets != 5 || out.Bytes != 500 || !out.Last.Equal(now) {
		t.Errorf("out credited %+v", out)
	}
	if st := r.Stats(); st.PacketsIn != 15 || st.PacketsOut != 5 {
		t.Errorf("stats %+v", st)
	}
	// Keys the reconciler never added (another run's leftovers) are not credited.
	be.in[fastpath.InKeyOf(call(9))] = fastpath.Counters{Packets: 1}
	r.ReadCounters()
	if got := src.Credited(call(9), true); got.Packets != 0 {
		t.Errorf("an unknown key was credited: %+v", got)
	}
}

// TestFinalCounters: with a backend that reads a mapping's counters as it
// deletes it, the packets since the last read are credited at teardown.
func TestFinalCounters(t *testing.T) {
	src, be := fastpathtest.New(call(1)), newMem()
	r := fastpath.New(src, finalBackend{be}, fastpath.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	c := call(1)
	be.in[fastpath.InKeyOf(c)] = fastpath.Counters{Packets: 2, Bytes: 200}
	r.ReadCounters()
	be.in[fastpath.InKeyOf(c)] = fastpath.Counters{Packets: 7, Bytes: 700} // the last second
	src.Set()
	r.Converge()
	if got := src.Credited(c, true); got.Packets != 7 || got.Bytes != 700 {
		t.Errorf("credited %+v, want all 7 packets", got)
	}
	if st := r.Stats(); st.PacketsIn != 7 || st.Mappings != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestTiersHearEveryChange: two reconcilers of one source (bpf and
// nf_tables behind it) each converge on a change at once, not on their
// next tick.
func TestTiersHearEveryChange(t *testing.T) {
	src := fastpathtest.New()
	var rs []*fastpath.Reconciler
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 2 {
		r := fastpath.New(src, newMem(), fastpath.Config{Tick: time.Hour})
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		go r.Run(ctx)
		rs = append(rs, r)
	}
	src.Set(call(1))
	for i, r := range rs {
		deadline := time.Now().Add(5 * time.Second)
		for r.Stats().Mappings != 1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if r.Stats().Mappings != 1 {
			t.Errorf("tier %d did not converge", i)
		}
	}
}

// TestOnMapping: each mapping is reported as it enters and leaves the
// kernel, once; a changed one leaves and enters again; a re-sync after a
// refused update reports only what changed meanwhile.
func TestOnMapping(t *testing.T) {
	var heard []string
	on := func(m conntrack.GREMap, entered bool) {
		w := "-"
		if entered {
			w = "+"
		}
		heard = append(heard, fmt.Sprintf("%s%d", w, m.OuterID))
	}
	want := func(when string, w ...string) {
		t.Helper()
		slices.Sort(heard)
		slices.Sort(w)
		if !slices.Equal(heard, w) {
			t.Errorf("%s: heard %v, want %v", when, heard, w)
		}
		heard = nil
	}
	src, be := fastpathtest.New(call(1), call(2)), newMem()
	r := fastpath.New(src, be, fastpath.Config{OnMapping: on})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	want("start", "+1", "+2")
	moved := call(2)
	moved.Inside = conntrack.Addr{192, 168, 1, 11}
	src.Set(call(1), moved, call(3))
	r.Converge()
	want("change", "-2", "+2", "+3")
	r.Converge()
	want("same generation")
	be.fail = errors.New("ENOBUFS")
	src.Set(call(1), call(4))
	r.Converge()
	want("refused")
	be.fail = nil
	r.Converge()
	want("re-sync", "-2", "-3", "+4")
}

func TestConvergeGap(t *testing.T) {
	for _, tt := range []struct{ took, want time.Duration }{
		{0, time.Millisecond}, {50 * time.Microsecond, time.Millisecond},
		{2 * time.Millisecond, 20 * time.Millisecond}, {time.Second, time.Second},
	} {
		if got := fastpath.ConvergeGap(tt.took); got != tt.want {
			t.Errorf("convergeGap(%v) = %v, want %v", tt.took, got, tt.want)
		}
	}
}

// genSource is a Source that tells its generation (as the call table
// does) and counts the copies of its desired state.
type genSource struct {
	*fastpathtest.Source
	copies int
}

func (s *genSource) Desired(dst []conntrack.GREMap) ([]conntrack.GREMap, uint64) {
	s.copies++
	return s.Source.Desired(dst)
}

func (s *genSource) Generation() uint64 {
	_, gen := s.Source.Desired(nil)
	return gen
}

// TestConvergeUnchanged: with a Source that tells its generation, a
// converge with nothing new (every tick) copies nothing; a change is
// applied as before, and so is the re-sync after a failure.
func TestConvergeUnchanged(t *testing.T) {
	src, be := &genSource{Source: fastpathtest.New(call(1))}, newMem()
	r := fastpath.New(src, be, fastpath.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	r.Converge()
	r.Converge()
	if src.copies != 1 {
		t.Errorf("%d copies of the desired state, want 1 (Start's)", src.copies)
	}
	src.Set(call(1), call(2))
	r.Converge()
	if got := be.keys(); !slices.Equal(got, []uint16{1, 2}) || src.copies != 2 {
		t.Errorf("after a change: %v, %d copies", got, src.copies)
	}
	be.fail = errors.New("ENOBUFS")
	src.Set(call(2))
	r.Converge()
	be.fail = nil
	r.Converge() // the same generation, but failing: a re-sync
	if got := be.keys(); !slices.Equal(got, []uint16{2}) || be.replaces != 2 {
		t.Errorf("after recovery: %v, %d replaces", got, be.replaces)
	}
}

// logSource is a Source with a change log as the call table keeps one
// (DesiredChanges), of size entries: Set records the keys whose mapping
// changed, and a reader behind the log is told to read Desired whole.
type logSource struct {
	*fastpathtest.Source
	size  int
	log   []logEntry
	lost  uint64
	reads int  // DesiredChanges calls that could tell
	miss  bool // Set logs nothing: a change the log missed
}

type logEntry struct {
	gen uint64
	key fastpath.InKey
}

func newLogSource(size int, maps ...conntrack.GREMap) *logSource {
	return &logSource{Source: fastpathtest.New(maps...), size: size}
}

func byKey(maps []conntrack.GREMap) map[fastpath.InKey]conntrack.GREMap {
	by := map[fastpath.InKey]conntrack.GREMap{}
	for _, m := range maps {
		by[fastpath.InKeyOf(m)] = m
	}
	return by
}

func (s *logSource) Set(maps ...conntrack.GREMap) {
	old, _ := s.Source.Desired(nil)
	s.Source.Set(maps...)
	_, gen := s.Source.Desired(nil)
	if s.miss {
		return
	}
	was, now := byKey(old), byKey(maps)
	for k, m := range was {
		if n, ok := now[k]; !ok || n != m {
			s.log = append(s.log, logEntry{gen, k})
		}
	}
	for k := range now {
		if _, ok := was[k]; !ok {
			s.log = append(s.log, logEntry{gen, k})
		}
	}
	if over := len(s.log) - s.size; over > 0 {
		s.lost = max(s.lost, s.log[over-1].gen)
		s.log = slices.Delete(s.log, 0, over)
	}
}

func (s *logSource) DesiredChanges(since uint64, dst []conntrack.GREChange) ([]conntrack.GREChange, uint64, bool) {
	maps, gen := s.Source.Desired(nil)
	if since < s.lost {
		return dst, gen, false
	}
	s.reads++
	now, seen := byKey(maps), map[fastpath.InKey]bool{}
	for _, e := range s.log {
		if e.gen <= since || seen[e.key] {
			continue
		}
		seen[e.key] = true
		m, live := now[e.key]
		if !live {
			m = conntrack.GREMap{Peer: e.key.Peer, Public: e.key.Public, OuterID: e.key.OuterID}
		}
		dst = append(dst, conntrack.GREChange{Map: m, Live: live})
	}
	return dst, gen, true
}

// TestConvergeLog: through a change log, a converge applies what it
// names, reports it, credits a deleted mapping's last counters, and reads
// the whole desired state only at start and for the re-sync after a
// refused update; then it follows the log again.
func TestConvergeLog(t *testing.T) {
	var heard []string
	on := func(m conntrack.GREMap, entered bool) { heard = append(heard, fmt.Sprint(entered, m.OuterID)) }
	src, be := newLogSource(4096, call(1), call(2)), newMem()
	r := fastpath.New(src, finalBackend{be}, fastpath.Config{OnMapping: on})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	heard = nil
	moved := call(2)
	moved.Inside = conntrack.Addr{192, 168, 1, 11}
	be.in[fastpath.InKeyOf(call(1))] = fastpath.Counters{Packets: 3, Bytes: 300}
	src.Set(moved, call(3))
	src.Set(moved, call(3), call(4))
	r.Converge()
	if got := be.keys(); !slices.Equal(got, []uint16{2, 3, 4}) || be.held[fastpath.InKeyOf(moved)] != moved {
		t.Errorf("after changes: %v", be.held)
	}
	if want := [][2]int{{3, 2}}; !slices.Equal(be.applies, want) {
		t.Errorf("applies %v, want %v", be.applies, want)
	}
	slices.Sort(heard)
	if want := []string{"false 1", "false 2", "true 2", "true 3", "true 4"}; !slices.Equal(heard, want) {
		t.Errorf("heard %v, want %v", heard, want)
	}
	if got := src.Credited(call(1), true); got.Packets != 3 {
		t.Errorf("call 1 credited %+v at deletion, want 3 packets", got)
	}
	be.fail = errors.New("ENOBUFS")
	src.Set(call(3))
	r.Converge() // the log, refused
	be.fail = nil
	src.Set(call(3), call(5))
	r.Converge() // re-sync: whole
	src.Set(call(5))
	r.Converge() // the log again
	if got := be.keys(); !slices.Equal(got, []uint16{5}) || be.replaces != 2 {
		t.Errorf("after recovery: %v, %d replaces", got, be.replaces)
	}
	if st := r.Stats(); st.Full != 2 || st.Mappings != 1 || src.reads != 3 {
		t.Errorf("%d whole converges (want Start's and the re-sync), %d read the log (want 3): %+v", st.Full, src.reads, st)
	}
}

// TestConvergeBackstop: a change the log did not name reaches the kernel
// by the whole converge every FullEvery ticks.
func TestConvergeBackstop(t *testing.T) {
	src, be := newLogSource(4096, call(1)), newMem()
	r := fastpath.New(src, be, fastpath.Config{Tick: time.Millisecond, FullEvery: 3})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	src.miss = true
	src.Set(call(1), call(2))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Mappings != 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if got := be.keys(); !slices.Equal(got, []uint16{1, 2}) {
		t.Errorf("the kernel holds %v, want the missed call 2 too", got)
	}
}

// manySource is a Source TestConvergeMany changes.
type manySource interface {
	fastpath.Source
	Set(maps ...conntrack.GREMap)
	Credited(m conntrack.GREMap, in bool) fastpathtest.Credit
}

// TestConvergeMany: over rounds of random changes to a thousand calls
// (some added, some gone, some moved to another inside host, in one or
// several generations), the kernel holds exactly the desired state after
// each converge, with the fewest changes, and every mapping's counters,
// read by either key, credit its own call; the same through a change log
// (a converge applies what it names), a short one that the reconciler
// falls behind now and then (a converge then diffs the whole state).
func TestConvergeMany(t *testing.T) {
	t.Run("whole", func(t *testing.T) { convergeMany(t, fastpathtest.New()) })
	t.Run("log", func(t *testing.T) {
		src := newLogSource(4096)
		st := convergeMany(t, src)
		if st.Full != 1 || src.reads < 20 {
			t.Errorf("%d whole converges (want Start's only), %d read the log", st.Full, src.reads)
		}
	})
	t.Run("short-log", func(t *testing.T) {
		src := newLogSource(150)
		st := convergeMany(t, src)
		t.Logf("%d whole converges, %d read the log", st.Full, src.reads)
		if st.Full < 3 || src.reads < 5 {
			t.Errorf("%d whole converges, %d read the log: the test overran it too seldom or too often", st.Full, src.reads)
		}
	})
}

func convergeMany(t *testing.T, src manySource) fastpath.Stats {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(i int, inside byte) conntrack.GREMap {
		return conntrack.GREMap{Peer: conntrack.Addr{203, 0, 113, byte(i % 7)}, OuterID: uint16(i), Public: conntrack.Addr{198, 51, 100, byte(i % 3)},
			Inside: conntrack.Addr{192, 168, 1, inside}, InsideID: uint16(i), PeerID: uint16(i * 3)}
	}
	want := map[int]conntrack.GREMap{}
	set := func() []conntrack.GREMap {
		var ms []conntrack.GREMap
		for _, m := range want {
			ms = append(ms, m)
		}
		return ms
	}
	be := newMem()
	r := fastpath.New(src, be, fastpath.Config{FullEvery: -1})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	for round := range 40 {
		changes := 0
		for range 1 + rng.IntN(3) {
			for range 1 + rng.IntN(100) {
				i := rng.IntN(1000)
				if _, ok := want[i]; ok && rng.IntN(2) == 0 {
					delete(want, i)
				} else {
					want[i] = mk(i, byte(rng.IntN(4)))
				}
				changes++
			}
			src.Set(set()...)
		}
		r.Converge()
		if len(be.held) != len(want) {
			t.Fatalf("round %d: kernel holds %d, want %d", round, len(be.held), len(want))
		}
		for _, m := range want {
			if be.held[fastpath.InKeyOf(m)] != m {
				t.Fatalf("round %d: kernel holds %+v for %+v", round, be.held[fastpath.InKeyOf(m)], m)
			}
		}
		if a := be.applies[len(be.applies)-1]; a[0] > changes || a[1] > changes {
			t.Errorf("round %d: applied %v for %d changes", round, a, changes)
		}
		if st := r.Stats(); st.Mappings != uint64(len(want)) {
			t.Errorf("round %d: mappings %d, want %d", round, st.Mappings, len(want))
		}
	}
	for _, m := range want {
		be.in[fastpath.InKeyOf(m)] = fastpath.Counters{Packets: uint64(m.OuterID) + 1, Bytes: 1}
		be.out[fastpath.OutKeyOf(m)] = fastpath.Counters{Packets: uint64(m.OuterID) + 2, Bytes: 1}
	}
	r.ReadCounters()
	for _, m := range want {
		if in, out := src.Credited(m, true), src.Credited(m, false); in.Packets != uint64(m.OuterID)+1 || out.Packets != uint64(m.OuterID)+2 {
			t.Fatalf("%+v credited in %+v out %+v", m, in, out)
		}
	}
	return r.Stats()
}

// BenchmarkConverge: one call set up and one torn down per converge at
// 10 000 calls (a converge reads the whole desired set).
func BenchmarkConverge(b *testing.B) {
	const n = 10000
	mk := func(i int) conntrack.GREMap {
		return conntrack.GREMap{Peer: conntrack.Addr{203, 0, byte(i >> 8), byte(i)}, OuterID: uint16(i), Public: conntrack.Addr{198, 51, 100, 1},
			Inside: conntrack.Addr{192, 168, byte(i >> 8), byte(i)}, InsideID: 1, PeerID: uint16(i)}
	}
	ms := make([]conntrack.GREMap, n)
	for i := range ms {
		ms[i] = mk(i)
	}
	src, be := fastpathtest.New(ms...), newMem()
	r := fastpath.New(src, be, fastpath.Config{})
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ms[i%n] = mk(n + i)
		src.Set(ms...)
		r.Converge()
	}
}

// dumpBackend is memBackend whose Counters reads from slices, in a
// shuffled order, as a kernel dump: a benchmark of the reconciler's side.
type dumpBackend struct {
	*memBackend
	in  []fastpath.InKey
	out []fastpath.OutKey
}

func (b *dumpBackend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	for _, k := range b.in {
		in(k, fastpath.Counters{Packets: 1, Bytes: 100})
	}
	for _, k := range b.out {
		out(k, fastpath.Counters{Packets: 1, Bytes: 100})
	}
	return nil
}

// dumpDelta is dumpBackend reporting deltas, of calls carrying nothing
// since the last read (as dumpBackend's after the first read).
type dumpDelta struct{ *dumpBackend }

func (dumpDelta) CountersAreDeltas() bool { return true }

func (b dumpDelta) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	for _, k := range b.in {
		in(k, fastpath.Counters{})
	}
	for _, k := range b.out {
		out(k, fastpath.Counters{})
	}
	return nil
}

// BenchmarkReadCounters: one counter read of 10 000 calls, both
// directions, from a backend that costs next to nothing (quiet: no
// change since the last read; churn: one call set up and one torn down
// before each read; delta: the backend reports deltas).
func BenchmarkReadCounters(b *testing.B) {
	const n = 10000
	mk := func(i int) conntrack.GREMap {
		j := uint16(i * 40503) // the inside hosts in another order than the peers
		return conntrack.GREMap{Peer: conntrack.Addr{203, 0, byte(i >> 8), byte(i)}, OuterID: uint16(i), Public: conntrack.Addr{198, 51, 100, 1},
			Inside: conntrack.Addr{192, 168, byte(j >> 8), byte(j)}, InsideID: 1, PeerID: uint16(i)}
	}
	for _, mode := range []string{"quiet", "churn", "delta-quiet", "delta-churn"} {
		churn := strings.HasSuffix(mode, "churn")
		b.Run(mode, func(b *testing.B) {
			ms := make([]conntrack.GREMap, n)
			be := &dumpBackend{memBackend: newMem()}
			for i := range ms {
				ms[i] = mk(i)
				be.in = append(be.in, fastpath.InKeyOf(ms[i]))
				be.out = append(be.out, fastpath.OutKeyOf(ms[i]))
			}
			rng := rand.New(rand.NewPCG(1, 2))
			rng.Shuffle(n, func(i, j int) { be.in[i], be.in[j] = be.in[j], be.in[i] })
			rng.Shuffle(n, func(i, j int) { be.out[i], be.out[j] = be.out[j], be.out[i] })
			src := fastpathtest.New(ms...)
			var fb fastpath.Backend = be
			if strings.HasPrefix(mode, "delta") {
				fb = dumpDelta{be}
			}
			r := fastpath.New(src, fb, fastpath.Config{})
			if err := r.Start(); err != nil {
				b.Fatal(err)
			}
			r.ReadCounters()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if churn {
					b.StopTimer()
					ms[i%n] = mk(n + i)
					src.Set(ms...)
					r.Converge()
					b.StartTimer()
				}
				r.ReadCounters()
			}
		})
	}
}

// TestMirrorSize: the mirror costs 37 bytes per call with one tier
// counting and 55 with two (the daemon's heap per call,
// BenchmarkHeapPerCall in nat/gateway).
func TestMirrorSize(t *testing.T) {
	if one, two := fastpath.MirrorBytes(1), fastpath.MirrorBytes(2); one != 37 || two != 55 {
		t.Errorf("a mapping costs %d bytes with one tier, %d with two; want 37, 55", one, two)
	}
}

// TestSparseCounts: a tier keeps counters only for the mappings it
// counted something for until they are many, then a dense column; the
// credits are exact across the change, and a mapping that went and came
// back counts from zero.
func TestSparseCounts(t *testing.T) {
	var ms []conntrack.GREMap
	for i := range 400 {
		ms = append(ms, call(uint16(10*i)))
	}
	src, be, mir := fastpathtest.New(ms...), newMem(), fastpath.NewMirror()
	r := fastpath.New(src, be, fastpath.Config{Mirror: mir})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	kernel := map[conntrack.GREMap]uint64{} // packets each way since added
	read := func(n int, step uint64) {
		for _, m := range ms[:n] {
			kernel[m] += step
			be.in[fastpath.InKeyOf(m)] = fastpath.Counters{Packets: kernel[m], Bytes: 100 * kernel[m]}
			be.out[fastpath.OutKeyOf(m)] = fastpath.Counters{Packets: kernel[m], Bytes: 100 * kernel[m]}
		}
		r.ReadCounters()
	}
	check := func(when string, dense bool, sparse int) {
		t.Helper()
		if d, n := mir.Column(0); d != dense || n != sparse {
			t.Errorf("%s: dense %v, %d sparse; want %v, %d", when, d, n, dense, sparse)
		}
		for _, m := range ms {
			if in, out := src.Credited(m, true), src.Credited(m, false); in.Packets != kernel[m] || out.Bytes != 100*kernel[m] {
				t.Fatalf("%s: %d credited in %+v out %+v, the kernel counted %d", when, m.OuterID, in, out, kernel[m])
			}
		}
	}
	read(400, 0)
	check("all zero", false, 0)
	read(10, 5)
	check("ten counted", false, 10)
	read(100, 3) // 100 sparse: a quarter of 400, not above it
	check("a hundred counted", false, 100)
	read(101, 2)
	check("above a quarter", true, 0)
	read(400, 7)
	check("all counted", true, 0)

	// Gone from sparse, back with another value: counted from zero.
	src2, be2, mir2 := fastpathtest.New(call(1)), newMem(), fastpath.NewMirror()
	r2 := fastpath.New(src2, be2, fastpath.Config{Mirror: mir2})
	if err := r2.Start(); err != nil {
		t.Fatal(err)
	}
	be2.in[fastpath.InKeyOf(call(1))] = fastpath.Counters{Packets: 50, Bytes: 50}
	r2.ReadCounters()
	src2.Set()
	r2.Converge()
	if _, n := mir2.Column(0); n != 0 {
		t.Errorf("no mapping, %d sparse entries", n)
	}
	src2.Set(call(1)) // a kernel entry of its own, counting from zero
	r2.Converge()
	be2.in[fastpath.InKeyOf(call(1))] = fastpath.Counters{Packets: 60, Bytes: 60}
	r2.ReadCounters()
	if got := src2.Credited(call(1), true); got.Packets != 110 {
		t.Errorf("credited %d packets, want 50 + 60", got.Packets)
	}
}

// TestMoved: the mirror keeps the counters' low bits (32 of the packets,
// 39 of the bytes) and still credits exactly what moved across their
// wraps; a counter going back (a re-created kernel entry) counts whole,
// exactly while it fits in the bits kept, beyond them when it moved back
// by less than half their range.
func TestMoved(t *testing.T) {
	const p32, b39 = 1 << 32, 1 << 39
	for _, tt := range []struct {
		name       string
		last, now  fastpath.Counters
		pkts, byts uint64
	}{
		{"none", fastpath.Counters{}, fastpath.Counters{}, 0, 0},
		{"small", fastpath.Counters{Packets: 10, Bytes: 1000}, fastpath.Counters{Packets: 15, Bytes: 1600}, 5, 600},
		{"packets wrap", fastpath.Counters{Packets: p32 - 3, Bytes: 5000}, fastpath.Counters{Packets: p32 + 4, Bytes: 5700}, 7, 700},
		{"bytes wrap", fastpath.Counters{Packets: 9, Bytes: b39 - 100}, fastpath.Counters{Packets: 11, Bytes: b39 + 200}, 2, 300},
		{"bytes past 2^32", fastpath.Counters{Packets: 9, Bytes: p32 - 100}, fastpath.Counters{Packets: 11, Bytes: p32 + 200}, 2, 300},
		{"both far", fastpath.Counters{Packets: 5*p32 + 1, Bytes: 7*b39 + 1}, fastpath.Counters{Packets: 5*p32 + 1e9, Bytes: 7*b39 + 1e11}, 1e9 - 1, 1e11 - 1},
		{"a minute at 30 Mpps", fastpath.Counters{Packets: p32 - 1}, fastpath.Counters{Packets: p32 - 1 + 1.8e9, Bytes: 1.8e9 * 64}, 1.8e9, 1.8e9 * 64},
		{"re-created", fastpath.Counters{Packets: 10, Bytes: 1000}, fastpath.Counters{Packets: 3, Bytes: 300}, 3, 300},
		{"re-created, bytes back", fastpath.Counters{Packets: 10, Bytes: 1000}, fastpath.Counters{Packets: 12, Bytes: 300}, 12, 300},
		{"re-created after 2^32", fastpath.Counters{Packets: p32 + 5, Bytes: 1e12}, fastpath.Counters{Packets: 100, Bytes: 9000}, 100, 9000},
		{"re-created after 2^39 bytes", fastpath.Counters{Packets: 7, Bytes: b39 + 5}, fastpath.Counters{Packets: 8, Bytes: 9000}, 8, 9000},
		{"back, far", fastpath.Counters{Packets: 9 * p32, Bytes: 9 * b39}, fastpath.Counters{Packets: 9*p32 - 5, Bytes: 9*b39 - 500}, 9*p32 - 5, 9*b39 - 500},
	} {
		if p, b := fastpath.Moved(tt.last, tt.now); p != tt.pkts || b != tt.byts {
			t.Errorf("%s: moved %d packets %d bytes, want %d, %d", tt.name, p, b, tt.pkts, tt.byts)
		}
	}
}

// TestCountersWrap: read after read across the kept bits' wraps, a
// call's credits add up to the kernel's cumulative counters exactly, the
// last read by a deletion included.
func TestCountersWrap(t *testing.T) {
	src, be := fastpathtest.New(call(1)), newMem()
	r := fastpath.New(src, finalBackend{be}, fastpath.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	c := call(1)
	var in, out fastpath.Counters
	for i := range 40 {
		in.Packets += 1<<30 + uint64(i) // four reads a wrap
		in.Bytes += 1<<37 + uint64(i)
		out.Packets += 3
		out.Bytes += 1<<37 + 7
		be.in[fastpath.InKeyOf(c)], be.out[fastpath.OutKeyOf(c)] = in, out
		if i < 39 {
			r.ReadCounters()
		}
	}
	src.Set()
	r.Converge() // deletes it, reading its last counters
	gi, gout := src.Credited(c, true), src.Credited(c, false)
	if gi.Packets != in.Packets || gi.Bytes != in.Bytes || gout.Packets != out.Packets || gout.Bytes != out.Bytes {
		t.Errorf("credited in %+v out %+v, want %+v %+v", gi, gout, in, out)
	}
	if st := r.Stats(); st.PacketsIn != in.Packets || st.BytesOut != out.Bytes {
		t.Errorf("stats %+v", st)
	}
}

// TestCounterTicks: above CountersPerTick mappings the counters are read
// less often, but at least once a minute (the mirror's low bits).
func TestCounterTicks(t *testing.T) {
	ms := make([]conntrack.GREMap, 5000)
	for i := range ms {
		ms[i] = call(uint16(2 * i))
	}
	for _, tt := range []struct {
		perTick int
		tick    time.Duration
		want    int
	}{{0, time.Second, 1}, {10000, time.Second, 1}, {1000, time.Second, 5}, {10, time.Second, 60}, {10, 10 * time.Second, 6}, {10, 2 * time.Minute, 1}} {
		r := fastpath.New(fastpathtest.New(ms...), newMem(), fastpath.Config{CountersPerTick: tt.perTick, Tick: tt.tick})
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		if got := r.CounterTicks(); got != tt.want {
			t.Errorf("%d per tick of %v: every %d ticks, want %d", tt.perTick, tt.tick, got, tt.want)
		}
	}
}

// TestSharedMirror: two tiers of one source share a mirror while they
// converge at their own times, one now and then refusing an update; each
// kernel holds exactly the desired state once both converged, the mirror
// keeps each mapping once (none that no tier holds), each tier's counters
// credit the calls on their own, and a stopped tier's mappings go.
func TestSharedMirror(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	mk := func(i int, inside byte) conntrack.GREMap {
		return conntrack.GREMap{Peer: conntrack.Addr{203, 0, 113, byte(i % 7)}, OuterID: uint16(i), Public: conntrack.Addr{198, 51, 100, byte(i % 3)},
			Inside: conntrack.Addr{192, 168, 1, inside}, InsideID: uint16(i), PeerID: uint16(i * 3)}
	}
	want := map[int]conntrack.GREMap{}
	src, mir := newLogSource(150), fastpath.NewMirror()
	bes := []*memBackend{newMem(), newMem()}
	var rs []*fastpath.Reconciler
	for i, be := range bes {
		var b fastpath.Backend = be
		if i == 0 {
			b = finalBackend{be}
		}
		r := fastpath.New(src, b, fastpath.Config{FullEvery: -1, Mirror: mir})
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	for range 60 {
		for range 1 + rng.IntN(3) {
			for range 1 + rng.IntN(60) {
				i := rng.IntN(500)
				if _, ok := want[i]; ok && rng.IntN(2) == 0 {
					delete(want, i)
				} else {
					want[i] = mk(i, byte(rng.IntN(3)))
				}
			}
			src.Set(slices.Collect(maps.Values(want))...)
		}
		for i, r := range rs {
			switch rng.IntN(5) {
			case 0: // not this time
			case 1:
				bes[i].fail = errors.New("ENOBUFS")
				r.Converge()
				bes[i].fail = nil
			default:
				r.Converge()
			}
		}
	}
	for _, r := range rs {
		r.Converge()
	}
	for i, be := range bes {
		if len(be.held) != len(want) {
			t.Fatalf("tier %d holds %d, want %d", i, len(be.held), len(want))
		}
		for _, m := range want {
			if be.held[fastpath.InKeyOf(m)] != m {
				t.Fatalf("tier %d holds %+v for %+v", i, be.held[fastpath.InKeyOf(m)], m)
			}
		}
		if st := rs[i].Stats(); st.Mappings != uint64(len(want)) || st.Failing {
			t.Errorf("tier %d: %+v", i, st)
		}
	}
	t.Logf("%d calls; tiers %+v, %+v", len(want), rs[0].Stats(), rs[1].Stats())
	if n := mir.Held(); n != len(want) {
		t.Errorf("the mirror keeps %d mappings, want %d", n, len(want))
	}
	for _, m := range want {
		for i, be := range bes {
			be.in[fastpath.InKeyOf(m)] = fastpath.Counters{Packets: uint64(i+1) * (uint64(m.OuterID) + 1), Bytes: 1}
			be.out[fastpath.OutKeyOf(m)] = fastpath.Counters{Packets: uint64(i+1) * (uint64(m.OuterID) + 2), Bytes: 1}
		}
	}
	for _, r := range rs {
		r.ReadCounters()
	}
	for _, m := range want {
		if in, out := src.Credited(m, true), src.Credited(m, false); in.Packets != 3*(uint64(m.OuterID)+1) || out.Packets != 3*(uint64(m.OuterID)+2) {
			t.Fatalf("%+v credited in %+v out %+v", m, in, out)
		}
	}
	if err := rs[0].Stop(false); err != nil {
		t.Fatal(err)
	}
	if n := mir.Held(); n != len(want) {
		t.Errorf("with one tier stopped the mirror keeps %d mappings, want %d", n, len(want))
	}
	src.Set()
	rs[1].Converge()
	if n := mir.Held(); n != 0 {
		t.Errorf("with no call the mirror keeps %d mappings", n)
	}
	if err := rs[1].Stop(false); err != nil {
		t.Fatal(err)
	}
}

// TestSharedMirrorRace: two tiers sharing a mirror run on their own
// goroutines while calls come and go and their counters are read (run
// with -race).
func TestSharedMirrorRace(t *testing.T) {
	src, mir := fastpathtest.New(), fastpath.NewMirror()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var rs []*fastpath.Reconciler
	for range 2 {
		be := newMem()
		for i := range 107 { // counters to read while the other tier converges
			be.in[fastpath.InKeyOf(call(uint16(i)))] = fastpath.Counters{Packets: 1, Bytes: 1}
			be.out[fastpath.OutKeyOf(call(uint16(i)))] = fastpath.Counters{Packets: 1, Bytes: 1}
		}
		r := fastpath.New(src, be, fastpath.Config{Tick: time.Millisecond, Mirror: mir})
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	done := make(chan struct{})
	for _, r := range rs {
		go func() {
			defer func() { done <- struct{}{} }()
			r.Run(ctx)
		}()
	}
	for i := range 200 {
		src.Set(call(uint16(i%50)), call(uint16(100+i%7)))
		time.Sleep(100 * time.Microsecond)
	}
	src.Set(call(1), call(2))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (rs[0].Stats().Mappings != 2 || rs[1].Stats().Mappings != 2 || mir.Held() != 2) {
		time.Sleep(time.Millisecond)
	}
	if rs[0].Stats().Mappings != 2 || rs[1].Stats().Mappings != 2 || mir.Held() != 2 {
		t.Errorf("tiers hold %d and %d, the mirror %d; want 2", rs[0].Stats().Mappings, rs[1].Stats().Mappings, mir.Held())
	}
	cancel()
	<-done
	<-done
}

// TestSharedMirrorMoved: while one tier holds a call's old value and the
// other its new one, the mirror keeps both; once both moved, one.
func TestSharedMirrorMoved(t *testing.T) {
	src, mir := newLogSource(16, call(1), call(2)), fastpath.NewMirror()
	a, b := newMem(), newMem()
	ra := fastpath.New(src, a, fastpath.Config{Mirror: mir})
	rb := fastpath.New(src, b, fastpath.Config{Mirror: mir})
	for _, r := range []*fastpath.Reconciler{ra, rb} {
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if n := mir.Held(); n != 2 {
		t.Fatalf("after start the mirror keeps %d, want 2", n)
	}
	moved := call(2)
	moved.Inside = conntrack.Addr{192, 168, 1, 11}
	src.Set(call(1), moved)
	ra.Converge()
	if n := mir.Held(); n != 3 || a.held[fastpath.InKeyOf(moved)] != moved || b.held[fastpath.InKeyOf(moved)] != call(2) {
		t.Fatalf("one tier moved: the mirror keeps %d (want 3), kernels %+v, %+v", n, a.held, b.held)
	}
	b.in[fastpath.InKeyOf(moved)] = fastpath.Counters{Packets: 4, Bytes: 40}
	rb.ReadCounters()
	if got := src.Credited(call(2), true); got.Packets != 4 {
		t.Errorf("the old value's tier credited %+v", got)
	}
	rb.Converge()
	if n := mir.Held(); n != 2 || b.held[fastpath.InKeyOf(moved)] != moved {
		t.Fatalf("both moved: the mirror keeps %d (want 2), kernel %+v", n, b.held)
	}
}
