//go:build e2e

package bpf

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

func openT(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(true) })
	return b
}

// setCounters pretends the program counted packets for k, in its line
// or in the spill.
func setCounters(t *testing.T, b *Backend, k key, packets uint32) {
	t.Helper()
	if s, ok := b.lines.find(k); ok {
		atomic.StoreUint32(b.lines.word(s*slotSize+valPackets), packets)
		return
	}
	var v value
	if err := b.calls.Lookup(&k, &v); err != nil {
		t.Fatal(err)
	}
	v.Packets = packets
	if err := b.calls.Update(&k, &v, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
}

// entry is what the backend holds for k, and where ("line", "spill" or
// "").
func entry(t *testing.T, b *Backend, k key) (value, string) {
	t.Helper()
	if s, ok := b.lines.find(k); ok {
		return b.lines.value(s), "line"
	}
	var v value
	if err := b.calls.Lookup(&k, &v); err == nil {
		return v, "spill"
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatal(err)
	}
	return value{}, ""
}

// collidingCalls: n calls whose keys, both directions, all hash to line
// 0 of lines with shift: two of them fill the line, the rest spill.
func collidingCalls(shift uint32, n int) []conntrack.GREMap {
	var out []conntrack.GREMap
	id := uint16(0)
	next := func(m *conntrack.GREMap, set func(uint16), k func() key) {
		for {
			id++
			if set(id); lineOf(k(), shift) == 0 {
				return
			}
		}
	}
	for i := range n {
		m := conntrack.GREMap{Peer: addr("203.0.113.5"), Public: addr("198.51.100.1"),
			Inside: conntrack.Addr{10, 78, 0, byte(i + 1)}, InsideID: 7}
		next(&m, func(v uint16) { m.OuterID = v }, func() key { return inKey(m) })
		next(&m, func(v uint16) { m.PeerID = v }, func() key { return outKey(m) })
		out = append(out, m)
	}
	return out
}

func entries(t *testing.T, b *Backend) (map[fastpath.InKey]fastpath.Counters, map[fastpath.OutKey]fastpath.Counters) {
	t.Helper()
	in := map[fastpath.InKey]fastpath.Counters{}
	out := map[fastpath.OutKey]fastpath.Counters{}
	if err := b.Counters(func(k fastpath.InKey, c fastpath.Counters) { in[k] = c },
		func(k fastpath.OutKey, c fastpath.Counters) { out[k] = c }); err != nil {
		t.Fatal(err)
	}
	return in, out
}

// TestApplyKeepsCounters: re-adding a live mapping keeps its counters, a
// changed one replaces it, a deletion of a mapping whose key another has
// taken leaves that one alone, and a full map is an error that deletions
// in the same Apply make room for.
func TestApplyKeepsCounters(t *testing.T) {
	nstest.NeedRoot(t)
	b := openT(t, Config{PinDir: pinDir(t, "apply"), MaxCalls: 2})
	m1 := labCall
	if err := b.Apply([]conntrack.GREMap{m1}, nil); err != nil {
		t.Fatal(err)
	}
	setCounters(t, b, inKey(m1), 5)
	if err := b.Apply([]conntrack.GREMap{m1}, nil); err != nil {
		t.Fatal(err)
	}
	in, _ := entries(t, b)
	if got := in[fastpath.InKeyOf(m1)].Packets; got != 5 {
		t.Fatalf("re-added mapping has %d packets, want %d", got, 5)
	}
	m2 := m1
	m2.InsideID = 9 // the same outer Call ID given to another inside call
	if err := b.Apply([]conntrack.GREMap{m2}, nil); err != nil {
		t.Fatal(err)
	}
	if v, where := entry(t, b, inKey(m1)); where == "" || v.CallID != [2]byte{0, 9} || v.Packets != 0 {
		t.Fatalf("changed mapping: %+v in %q", v, where)
	}
	if err := b.Apply(nil, []conntrack.GREMap{m1}); err != nil {
		t.Fatal(err)
	}
	if in, out := entries(t, b); len(in) != 1 || len(out) != 0 {
		t.Fatalf("deleting the old mapping: %d inbound entries (want m2's kept), %d outbound", len(in), len(out))
	}
	// The last counters of a deleted mapping are handed over.
	setCounters(t, b, inKey(m2), 3)
	final := map[bool]fastpath.Counters{}
	b.OnDelete(func(m conntrack.GREMap, in bool, c fastpath.Counters) {
		if m != m2 {
			t.Errorf("OnDelete for %+v", m)
		}
		final[in] = c
	})
	if err := b.Apply(nil, []conntrack.GREMap{m2}); err != nil {
		t.Fatal(err)
	}
	// (m2's outbound key is m1's, deleted with m1 above.)
	if len(final) != 1 || final[true].Packets != 3 {
		t.Fatalf("final counters %+v", final)
	}
	b.OnDelete(nil)
	// Full: four calls whose keys share one line; the first takes the
	// line, the next two the spill (4 entries), the fourth finds no room.
	four := collidingCalls(b.lines.shift, 4)
	if err := b.Replace(four[:3]); err != nil {
		t.Fatal(err)
	}
	for i, m := range four[:3] {
		if _, where := entry(t, b, outKey(m)); where != map[bool]string{true: "line", false: "spill"}[i == 0] {
			t.Fatalf("call %d in %q", i, where)
		}
	}
	err := b.Apply(four[3:], nil)
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("4 calls in room for 3: %v", err)
	}
	t.Logf("full: %v", err)
	if err := b.Apply(four[3:], four[1:2]); err != nil {
		t.Fatalf("deletions make room: %v", err)
	}
	if in, out := entries(t, b); len(in) != 3 || len(out) != 3 {
		t.Fatalf("%d %d entries", len(in), len(out))
	}
}

// TestSlotReuse: an emptied slot waits slotGrace before another key takes
// it (a program that matched the old key must not see a new value); the
// key meanwhile goes to the other slot or the spill.
func TestSlotReuse(t *testing.T) {
	nstest.NeedRoot(t)
	b := openT(t, Config{PinDir: pinDir(t, "reuse"), MaxCalls: 8})
	c := collidingCalls(b.lines.shift, 3)
	if err := b.Apply(c[:2], nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(c[2:], c[:1]); err != nil {
		t.Fatal(err)
	}
	if _, where := entry(t, b, inKey(c[2])); where != "spill" {
		t.Fatalf("a key right after a slot emptied: in %q, want the spill", where)
	}
	if err := b.Apply(nil, c[2:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(slotGrace)
	if err := b.Apply(c[2:], nil); err != nil {
		t.Fatal(err)
	}
	if _, where := entry(t, b, inKey(c[2])); where != "line" {
		t.Fatalf("after the grace: in %q, want the line", where)
	}
}

// TestReplaceConverges: Replace keeps the counters of what stays and
// removes the rest.
func TestReplaceConverges(t *testing.T) {
	nstest.NeedRoot(t)
	b := openT(t, Config{PinDir: pinDir(t, "replace"), MaxCalls: 100})
	calls := manyCalls(10)
	if err := b.Replace(calls); err != nil {
		t.Fatal(err)
	}
	setCounters(t, b, outKey(calls[3]), 2)
	if err := b.Replace(calls[2:6]); err != nil {
		t.Fatal(err)
	}
	in, out := entries(t, b)
	if len(in) != 4 || len(out) != 4 {
		t.Fatalf("%d %d entries, want 4", len(in), len(out))
	}
	if got := out[fastpath.OutKeyOf(calls[3])].Packets; got != 2 {
		t.Fatalf("kept entry has %d packets", got)
	}
	// More calls than room: the batch fails, the entries that fit go in
	// one by one, whole calls first; the error names the full map.
	small := openT(t, Config{PinDir: pinDir(t, "replace-full"), MaxCalls: 2})
	err := small.Replace(collidingCalls(small.lines.shift, 5))
	if err == nil || strings.Count(err.Error(), "pptpgw_gre_call is full") != 1 {
		t.Fatalf("5 calls in room for 3: %v", err)
	}
	if in, out := entries(t, small); len(in) != 3 || len(out) != 3 {
		t.Fatalf("%d %d entries, want 3", len(in), len(out))
	}
}

// manyCalls: n calls of different inside hosts to one peer.
func manyCalls(n int) []conntrack.GREMap {
	var out []conntrack.GREMap
	for i := range n {
		out = append(out, conntrack.GREMap{Peer: addr("203.0.113.5"), OuterID: uint16(i), Public: addr("198.51.100.1"),
			Inside: conntrack.Addr{10, 77, byte(i >> 8), byte(i)}, InsideID: 7, PeerID: uint16(i)})
	}
	return out
}

// TestManyCalls: 10 000 calls in, counters read, out, timed.
func TestManyCalls(t *testing.T) {
	nstest.NeedRoot(t)
	b := openT(t, Config{PinDir: pinDir(t, "many"), MaxCalls: 10000})
	calls := manyCalls(10000)
	start := time.Now()
	if err := b.Replace(calls); err != nil {
		t.Fatal(err)
	}
	tReplace := time.Since(start)
	start = time.Now()
	n := 0
	if err := b.Counters(func(fastpath.InKey, fastpath.Counters) { n++ }, func(fastpath.OutKey, fastpath.Counters) { n++ }); err != nil {
		t.Fatal(err)
	}
	tCounters := time.Since(start)
	if n != 20000 {
		t.Fatalf("%d entries read", n)
	}
	start = time.Now()
	if err := b.Replace(calls); err != nil { // nothing to do
		t.Fatal(err)
	}
	tSame := time.Since(start)
	start = time.Now()
	if err := b.Apply(nil, calls); err != nil {
		t.Fatal(err)
	}
	tDel := time.Since(start)
	t.Logf("10 000 calls: Replace into empty maps %v, Counters %v, Replace unchanged %v, Apply deleting all %v",
		tReplace, tCounters, tSame, tDel)
}

// TestNotEthernet: a tun device is skipped with a reason, the others are
// attached.
func TestNotEthernet(t *testing.T) {
	nstest.NeedRoot(t)
	ns, ifOut, _ := goldenNS(t)
	nstest.Sh(t, "ip", "-n", ns, "tuntap", "add", "dev", "bpftun0", "mode", "tun")
	var tun int
	nstest.InNS(t, ns, func() {
		ifi, err := netInterface("bpftun0")
		if err != nil {
			t.Fatal(err)
		}
		tun = ifi
	})
	b := openT(t, Config{PinDir: pinDir(t, "tun"), MaxCalls: 4, NetNS: nstest.FD(t, ns)})
	err := b.SetInterfaces([]int{tun, ifOut})
	if err == nil || !strings.Contains(err.Error(), "not Ethernet") {
		t.Fatalf("error %v", err)
	}
	t.Logf("%v", err)
	if got := b.Interfaces(); len(got) != 1 || got[0] != ifOut {
		t.Fatalf("attached to %v", got)
	}
}

// TestModeSwitchAndMaxCalls: a restart with cls_bpf forced moves the
// tcx attachments to cls_bpf; one with another --max-calls replaces the
// maps and moves the attachments to the new program.
func TestModeSwitchAndMaxCalls(t *testing.T) {
	nstest.NeedRoot(t)
	ns, ifOut, ifIn := goldenNS(t)
	fd := nstest.FD(t, ns)
	cfg := Config{PinDir: pinDir(t, "switch"), MaxCalls: 8, NetNS: fd}
	b := openT(t, cfg)
	if err := b.SetInterfaces([]int{ifOut, ifIn}); err != nil {
		t.Fatal(err)
	}
	b.Close(false)
	cfg.ForceClsBPF, cfg.MaxCalls = true, 16
	b = openT(t, cfg)
	if info, err := b.calls.Info(); err != nil || info.MaxEntries != 32 {
		t.Fatalf("map after a max-calls change: %+v %v", info, err)
	}
	if err := b.SetInterfaces([]int{ifOut, ifIn}); err != nil {
		t.Fatal(err)
	}
	nstest.InNS(t, ns, func() {
		for _, ifi := range []int{ifOut, ifIn} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: ifi, Attach: ebpf.AttachTCXIngress})
			if err != nil || len(r.Programs) != 0 {
				t.Errorf("tcx programs left on %d: %v %v", ifi, r, err)
			}
		}
		got, err := clsAttached()
		if err != nil || fmt.Sprint(got) != fmt.Sprint(sorted(ifOut, ifIn)) {
			t.Errorf("cls_bpf on %v (%v), want %v", got, err, sorted(ifOut, ifIn))
		}
	})
	// Remove, as `pptpgw rules remove` with no daemon: nothing left.
	b.Close(false)
	if err := RemoveIn(cfg.PinDir, fd); err != nil {
		t.Fatal(err)
	}
	nstest.InNS(t, ns, func() {
		if got, _ := clsAttached(); len(got) != 0 {
			t.Errorf("cls_bpf left on %v", got)
		}
	})
}

func TestProbe(t *testing.T) {
	nstest.NeedRoot(t)
	r := Probe("")
	t.Logf("%+v", r)
	if !r.OK() || !r.Loads || !r.KernelOK || !r.CapBPF || !r.CapNetAdmin || !r.BPFFS {
		t.Fatalf("probe as root on %s: %+v", r.Kernel, r)
	}
	if maj, min, _ := kernelVersion(); r.TCX != (maj > 6 || maj == 6 && min >= 6) {
		t.Fatalf("tcx %v on %d.%d", r.TCX, maj, min)
	}
	if r := Probe("/tmp/not-bpffs/pptpgw"); r.BPFFS || r.OK() {
		t.Fatalf("a pin directory off bpffs: %+v", r)
	}
}

// BenchmarkProgram: the program's own cost per packet (BPF_PROG_TEST_RUN
// repeating it 250 times a syscall): a hit (lookup, FIB, rewrite, counters, redirect)
// and a miss. Two mappings send the packet back and forth between two
// inside hosts so that every repeat hits; the TTL bounds a run to 250.
func BenchmarkProgram(b *testing.B) {
	nstest.NeedRoot(b)
	be, ns, _, ifIn := goldenBackend(b)
	nstest.Sh(b, "ip", "-n", ns, "neigh", "replace", "192.168.77.11", "lladdr", "02:00:00:00:00:11", "dev", "bpfgi", "nud", "permanent")
	a := conntrack.GREMap{Peer: addr("203.0.113.5"), Public: addr("192.168.77.10"), OuterID: 7, Inside: addr("192.168.77.11"), InsideID: 8, PeerID: 1}
	c := conntrack.GREMap{Peer: addr("203.0.113.5"), Public: addr("192.168.77.11"), OuterID: 8, Inside: addr("192.168.77.10"), InsideID: 7, PeerID: 2}
	if err := be.Apply([]conntrack.GREMap{a, c}, nil); err != nil {
		b.Fatal(err)
	}
	hit := frame{dst: macGwIn, src: macRouter, ttl: 255, saddr: "203.0.113.5", daddr: "192.168.77.10", callID: 7, payload: 4}.bytes()
	miss := frame{dst: macGwIn, src: macRouter, ttl: 255, saddr: "203.0.113.5", daddr: "192.168.77.10", callID: 99, payload: 4}.bytes()
	for _, bc := range []struct {
		name string
		in   []byte
		ret  uint32
	}{{"hit", hit, verdictRedirect}, {"miss", miss, verdictPassU}} {
		b.Run(bc.name, func(b *testing.B) {
			var total time.Duration
			var ret uint32
			var err error
			nstest.InNS(b, ns, func() {
				for done := 0; done < b.N; {
					n := min(250, b.N-done)
					// On the inside interface: the program takes frames only
					// from interfaces it is attached to. Run reports no
					// duration: the syscall is timed too, one per 250 runs.
					opts := ebpf.RunOptions{Data: bc.in, Repeat: uint32(n), Context: skbCtx{Ifindex: uint32(ifIn)}}
					t0 := time.Now()
					ret, err = be.Program().Run(&opts)
					if err != nil {
						return
					}
					total += time.Since(t0)
					done += n
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			if ret != bc.ret {
				b.Fatalf("verdict %d, want %d", int32(ret), int32(bc.ret))
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}

// BenchmarkCounters: one read of every counter at 10 000 calls.
func BenchmarkCounters(b *testing.B) {
	nstest.NeedRoot(b)
	be := openT(b, Config{PinDir: pinDir(b, "benchc"), MaxCalls: 10000})
	if err := be.Replace(manyCalls(10000)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := be.Counters(func(fastpath.InKey, fastpath.Counters) {}, func(fastpath.OutKey, fastpath.Counters) {}); err != nil {
			b.Fatal(err)
		}
	}
}
