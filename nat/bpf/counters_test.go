package bpf

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// cumulative has the test run with the counters of a 32-bit host
// (deltaCounters false), on any host.
func cumulative(t *testing.T) {
	old := deltaCounters
	deltaCounters = false
	t.Cleanup(func() { deltaCounters = old })
}

func deltas(t *testing.T) {
	old := deltaCounters
	deltaCounters = true
	t.Cleanup(func() { deltaCounters = old })
}

// TestDeltaCountersHere: 64-bit hosts take deltas, as the swaps are
// single instructions there.
func TestDeltaCountersHere(t *testing.T) {
	if want := unsafe.Sizeof(uintptr(0)) == 8; deltaCounters != want {
		t.Fatalf("deltaCounters %v on a host with %d-byte pointers", deltaCounters, unsafe.Sizeof(uintptr(0)))
	}
}

// TestLineCounters: with deltas a take is what the program added since the
// last one and leaves zero, and no per-slot state is made; cumulative (32-bit
// hosts), the counts as they are, the 32-bit packet counter unwrapped.
func TestLineCounters(t *testing.T) {
	set := func(l *lines, p uint32, by uint64) {
		binary.NativeEndian.PutUint32(l.mem[valPackets:], p)
		binary.NativeEndian.PutUint64(l.mem[valBytes:], by)
	}
	t.Run("deltas", func(t *testing.T) {
		deltas(t)
		l := newLines(make([]byte, 8*lineSize), false)
		if l.lo != nil || l.hi != nil || !(&Backend{lines: l}).CountersAreDeltas() {
			t.Fatal("per-slot wraps made, or no deltas")
		}
		l.put(sameLine(l.shift, 1)[0], inValue(testMap))
		set(l, 0xffffff00, 1<<40)
		if p, by := l.take(0); p != 0xffffff00 || by != 1<<40 {
			t.Fatalf("take %d %d", p, by)
		}
		if p, by := l.take(0); p != 0 || by != 0 || l.value(0).Packets != 0 || l.value(0).Byts != 0 {
			t.Fatalf("a second take %d %d, slot %+v", p, by, l.value(0))
		}
		set(l, 3, 300)
		if p, by := l.empty(0); p != 3 || by != 300 {
			t.Fatalf("final %d %d", p, by)
		}
	})
	t.Run("cumulative", func(t *testing.T) {
		cumulative(t)
		l := newLines(make([]byte, 8*lineSize), false)
		if len(l.lo) != l.slots() || (&Backend{lines: l}).CountersAreDeltas() {
			t.Fatal("no per-slot wraps, or deltas")
		}
		l.put(sameLine(l.shift, 1)[0], inValue(testMap))
		set(l, 0xffffff00, 1<<40)
		if p, by := l.take(0); p != 0xffffff00 || by != 1<<40 {
			t.Fatalf("take %d %d", p, by)
		}
		set(l, 5, 1<<40+100)
		if p, by := l.take(0); p != 1<<32|5 || by != 1<<40+100 {
			t.Fatalf("after a wrap: %d %d", p, by)
		}
		if p, _ := l.empty(0); p != 1<<32|5 {
			t.Fatalf("final %d packets", p)
		}
	})
}

// TestLineSwapsRace: a writer adds packets to two slots as the program
// does (packets, then bytes, atomically) while takes read them: the
// deltas add up to exactly what was added, the last ones coming with
// the slots' emptying (run with -race).
func TestLineSwapsRace(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("swaps against adds need 64-bit atomics")
	}
	deltas(t)
	l := newLines(make([]byte, 8*lineSize), false)
	ks := sameLine(l.shift, 2)
	l.put(ks[0], inValue(testMap))
	l.put(ks[1], outValue(testMap))
	const n = 200000
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			o := (i % 2) * slotSize
			atomic.AddUint32(l.word(o+valPackets), 1)
			atomic.AddUint64(l.dword(o+valBytes), uint64(i%1400+20))
		}
		stop.Store(true)
	}()
	var pkts, byts [2]uint64
	reads := 0
	for !stop.Load() {
		for s := range 2 {
			p, by := l.take(s)
			pkts[s] += p
			byts[s] += by
		}
		reads++
	}
	wg.Wait()
	var wantB [2]uint64
	for i := range n {
		wantB[i%2] += uint64(i%1400 + 20)
	}
	for s := range 2 {
		p, by := l.empty(s)
		pkts[s] += p
		byts[s] += by
		if pkts[s] != n/2 || byts[s] != wantB[s] {
			t.Errorf("slot %d: %d packets %d bytes, want %d and %d", s, pkts[s], byts[s], n/2, wantB[s])
		}
	}
	t.Logf("%d reads", reads)
}

// TestSpillCounters: the spill's values are cumulative; with deltas a
// read reports what moved since the last one (the packet counter across
// its wrap, an entry with fewer bytes as new), cumulative the counts
// with the wraps; an entry that never counted keeps nothing.
func TestSpillCounters(t *testing.T) {
	k := inKey(testMap)
	val := func(p uint32, by uint64) value { v := inValue(testMap); v.Packets, v.Byts = p, by; return v }
	t.Run("deltas", func(t *testing.T) {
		deltas(t)
		b := &Backend{lines: newLines(make([]byte, 8*lineSize), false)}
		for i, tc := range []struct {
			v    value
			want fastpath.Counters
		}{
			{val(0, 0), fastpath.Counters{}},
			{val(10, 1000), fastpath.Counters{Packets: 10, Bytes: 1000}},
			{val(10, 1000), fastpath.Counters{}},
			{val(0xfffffffe, 1<<33), fastpath.Counters{Packets: 0xfffffffe - 10, Bytes: 1<<33 - 1000}},
			{val(3, 1<<33+500), fastpath.Counters{Packets: 5, Bytes: 500}}, // the packets wrapped
			{val(2, 200), fastpath.Counters{Packets: 2, Bytes: 200}},       // another entry
		} {
			if got := b.spillCounters(k, tc.v); got != tc.want {
				t.Fatalf("read %d: %+v, want %+v", i, got, tc.want)
			}
			if i == 0 && len(b.wraps) != 0 {
				t.Fatal("an entry that never counted is kept")
			}
		}
	})
	t.Run("cumulative", func(t *testing.T) {
		cumulative(t)
		b := &Backend{lines: newLines(make([]byte, 8*lineSize), false)}
		for i, tc := range []struct {
			v    value
			want fastpath.Counters
		}{
			{val(10, 1000), fastpath.Counters{Packets: 10, Bytes: 1000}},
			{val(0xfffffffe, 1<<33), fastpath.Counters{Packets: 0xfffffffe, Bytes: 1 << 33}},
			{val(3, 1<<33+500), fastpath.Counters{Packets: 1<<32 | 3, Bytes: 1<<33 + 500}},
		} {
			if got := b.spillCounters(k, tc.v); got != tc.want {
				t.Fatalf("read %d: %+v, want %+v", i, got, tc.want)
			}
		}
	})
}
