package bpf

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// noSwaps has the test run with the counters of a 32-bit host
// (swapCounters false), on any host.
func noSwaps(t *testing.T) {
	old := swapCounters
	swapCounters = false
	t.Cleanup(func() { swapCounters = old })
}

func swaps(t *testing.T) {
	old := swapCounters
	swapCounters = true
	t.Cleanup(func() { swapCounters = old })
}

// TestSwapCountersHere: 64-bit hosts swap, as the swaps are single
// instructions there.
func TestSwapCountersHere(t *testing.T) {
	if want := unsafe.Sizeof(uintptr(0)) == 8; swapCounters != want {
		t.Fatalf("swapCounters %v on a host with %d-byte pointers", swapCounters, unsafe.Sizeof(uintptr(0)))
	}
}

// TestLineCounters: a take is what the program added since the last one.
// With swaps it leaves zero and no per-slot state is made; without (32-bit
// hosts), by difference from the last read, across the packet counter's
// wrap, and adopted lines' counters count from what they hold.
func TestLineCounters(t *testing.T) {
	set := func(l *lines, p uint32, by uint64) {
		binary.NativeEndian.PutUint32(l.mem[valPackets:], p)
		binary.NativeEndian.PutUint64(l.mem[valBytes:], by)
	}
	t.Run("swaps", func(t *testing.T) {
		swaps(t)
		l := newLines(make([]byte, 8*lineSize), false)
		if l.pkts != nil || l.byts != nil {
			t.Fatal("per-slot reads made")
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
	t.Run("no swaps", func(t *testing.T) {
		noSwaps(t)
		l := newLines(make([]byte, 8*lineSize), false)
		if len(l.pkts) != l.slots() || len(l.byts) != l.slots() {
			t.Fatal("no per-slot reads")
		}
		l.put(sameLine(l.shift, 1)[0], inValue(testMap))
		set(l, 0xffffff00, 1<<40)
		if p, by := l.take(0); p != 0xffffff00 || by != 1<<40 {
			t.Fatalf("take %d %d", p, by)
		}
		set(l, 5, 1<<40+100)
		if p, by := l.take(0); p != 0x105 || by != 100 {
			t.Fatalf("across the wrap: %d %d", p, by)
		}
		set(l, 8, 1<<40+400)
		if p, by := l.empty(0); p != 3 || by != 300 {
			t.Fatalf("final %d %d", p, by)
		}
		// Adopted: what the lines hold was read by the daemon before.
		mem := make([]byte, 8*lineSize)
		binary.NativeEndian.PutUint32(mem[valPackets:], 70)
		binary.NativeEndian.PutUint64(mem[valBytes:], 7000)
		a := newLines(mem, true)
		binary.NativeEndian.PutUint32(mem[valPackets:], 72)
		binary.NativeEndian.PutUint64(mem[valBytes:], 7200)
		if p, by := a.take(0); p != 2 || by != 200 {
			t.Fatalf("adopted: %d %d, want what came after", p, by)
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
	swaps(t)
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

// TestSpillCounters: the spill's values are cumulative; a read reports
// what moved since the last one (the packet counter across its wrap, an
// entry with fewer bytes as new); an entry that never counted keeps
// nothing.
func TestSpillCounters(t *testing.T) {
	k := inKey(testMap)
	val := func(p uint32, by uint64) value { v := inValue(testMap); v.Packets, v.Byts = p, by; return v }
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
}
