package fastpath_test

import (
	"errors"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/fastpath/fastpathtest"
)

// deltaBackend reports what moved since its last report
// (fastpath.DeltaCounters), as the bpf call lines do with their swaps: a
// report takes a key's counters and zeroes them, a deletion hands over
// what is left.
type deltaBackend struct{ *memBackend }

func newDelta() deltaBackend { return deltaBackend{newMem()} }

func (deltaBackend) CountersAreDeltas() bool { return true }

func (b deltaBackend) OnDelete(fn func(conntrack.GREMap, bool, fastpath.Counters)) { b.onDelete = fn }

func (b deltaBackend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	if err := b.memBackend.Counters(in, out); err != nil {
		return err
	}
	clear(b.in)
	clear(b.out)
	return nil
}

func (b deltaBackend) Apply(add, del []conntrack.GREMap) error {
	if err := b.memBackend.Apply(add, del); err != nil {
		return err
	}
	for _, m := range del { // reported (onDelete) or gone with the entry
		delete(b.in, fastpath.InKeyOf(m))
		delete(b.out, fastpath.OutKeyOf(m))
	}
	return nil
}

// count has the kernel translate p packets of 10 bytes for m each way.
func (b *memBackend) count(m conntrack.GREMap, p uint64) {
	add := func(c fastpath.Counters) fastpath.Counters {
		return fastpath.Counters{Packets: c.Packets + p, Bytes: c.Bytes + 10*p}
	}
	b.in[fastpath.InKeyOf(m)] = add(b.in[fastpath.InKeyOf(m)])
	b.out[fastpath.OutKeyOf(m)] = add(b.out[fastpath.OutKeyOf(m)])
}

func wantCredited(t *testing.T, src *fastpathtest.Source, m conntrack.GREMap, p uint64) {
	t.Helper()
	for _, in := range []bool{true, false} {
		if got := src.Credited(m, in); got.Packets != p || got.Bytes != 10*p {
			t.Fatalf("%d in %v: credited %+v, want %d packets", m.OuterID, in, got, p)
		}
	}
}

// TestDeltaCounters: a backend reporting deltas is credited exactly what
// it reports, through reads, a deletion (its final counters), a refused
// update and the Replace after it; the mirror keeps nothing of its
// counters, however many calls counted.
func TestDeltaCounters(t *testing.T) {
	var ms []conntrack.GREMap
	for i := range 300 {
		ms = append(ms, call(uint16(10*i)))
	}
	src, be, mir := fastpathtest.New(ms...), newDelta(), fastpath.NewMirror()
	r := fastpath.New(src, be, fastpath.Config{Mirror: mir})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	want := map[conntrack.GREMap]uint64{}
	count := func(m conntrack.GREMap, p uint64) { be.count(m, p); want[m] += p }
	for round := range 3 {
		for i, m := range ms {
			count(m, uint64(i+round))
		}
		r.ReadCounters()
	}
	for _, m := range ms {
		wantCredited(t, src, m, want[m])
	}
	if dense, sparse := mir.Column(0); dense || sparse != 0 {
		t.Fatalf("the mirror keeps the delta tier's counters: dense %v, %d sparse", dense, sparse)
	}
	// A call deleted: what it counted since the last read comes with
	// the deletion.
	count(ms[0], 7)
	src.Set(ms[1:]...)
	r.Converge()
	wantCredited(t, src, ms[0], want[ms[0]])
	// A refused update: no read meanwhile; the Replace after it keeps the
	// entries, whose next report is what moved since the last one.
	be.fail = errors.New("ENOBUFS")
	src.Set(ms[2:]...)
	r.Converge()
	count(ms[1], 5) // gone with the failed update's entry (Replace drops it)
	count(ms[2], 3)
	r.ReadCounters()
	be.fail = nil
	r.Converge()
	if st := r.Stats(); st.Failing || st.Mappings != uint64(len(ms)-2) {
		t.Fatalf("after the re-sync: %+v", st)
	}
	r.ReadCounters()
	wantCredited(t, src, ms[2], want[ms[2]])
	if dense, sparse := mir.Column(0); dense || sparse != 0 {
		t.Fatalf("after a re-sync the mirror keeps counters: dense %v, %d sparse", dense, sparse)
	}
}

// TestDeltaBytesAlone: a read between a packet's two adds reports its
// packet, and the next its bytes alone: both are credited.
func TestDeltaBytesAlone(t *testing.T) {
	src, be := fastpathtest.New(call(1)), newDelta()
	r := fastpath.New(src, be, fastpath.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	be.in[fastpath.InKeyOf(call(1))] = fastpath.Counters{Packets: 1}
	r.ReadCounters()
	be.in[fastpath.InKeyOf(call(1))] = fastpath.Counters{Bytes: 64}
	r.ReadCounters()
	if got := src.Credited(call(1), true); got.Packets != 1 || got.Bytes != 64 || got.Last.IsZero() {
		t.Fatalf("credited %+v", got)
	}
}

// TestSharedMirrorDelta: a delta tier and a cumulative one share a
// mirror: each credits exactly, the cumulative tier's counters go dense
// once many counted, the delta tier's are never kept.
func TestSharedMirrorDelta(t *testing.T) {
	var ms []conntrack.GREMap
	for i := range 200 {
		ms = append(ms, call(uint16(10*i)))
	}
	src, mir := fastpathtest.New(ms...), fastpath.NewMirror()
	d, c := newDelta(), newMem()
	rd := fastpath.New(src, d, fastpath.Config{Mirror: mir})
	rc := fastpath.New(src, c, fastpath.Config{Mirror: mir})
	for _, r := range []*fastpath.Reconciler{rd, rc} {
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		for i, m := range ms {
			d.count(m, uint64(i+1))
			c.count(m, uint64(round+1)) // cumulative: 1, 3, 6
		}
		rd.ReadCounters()
		rc.ReadCounters()
	}
	for i, m := range ms {
		wantCredited(t, src, m, 3*uint64(i+1)+6)
	}
	if dense, sparse := mir.Column(0); dense || sparse != 0 {
		t.Errorf("delta tier: dense %v, %d sparse", dense, sparse)
	}
	if dense, _ := mir.Column(1); !dense {
		t.Errorf("cumulative tier: no dense column")
	}
	// Deleted: the delta tier's final counters, the cumulative tier's
	// last read.
	d.count(ms[0], 4)
	src.Set(ms[1:]...)
	rd.Converge()
	rc.Converge()
	wantCredited(t, src, ms[0], 3+6+4)
	if n := mir.Held(); n != len(ms)-1 {
		t.Errorf("the mirror keeps %d mappings, want %d", n, len(ms)-1)
	}
}
