package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
)

func addr(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

var testMap = conntrack.GREMap{Peer: addr("203.0.113.5"), OuterID: 40001, Public: addr("198.51.100.1"),
	Inside: addr("192.168.1.10"), InsideID: 7, PeerID: 555}

// The instruction stream assembles: every jump finds its label, and only
// the maps are left for the loader to resolve.
func TestInstructionsAssemble(t *testing.T) {
	insns := Instructions(1024)
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	refs := map[string]int{}
	for _, ins := range insns {
		if ins.IsLoadFromMap() {
			refs[ins.Reference()]++
		}
	}
	if refs[MapLineName] != 1 || refs[MapCallsName] != 1 || refs[MapDevName] != 2 || len(refs) != 3 {
		t.Fatalf("map references %v", refs)
	}
	if n := len(insns); n > 240 {
		t.Errorf("%d instructions: the program grew", n)
	}
	var calls []asm.BuiltinFunc
	for _, ins := range insns {
		if ins.IsBuiltinCall() {
			calls = append(calls, asm.BuiltinFunc(ins.Constant))
		}
	}
	want := []asm.BuiltinFunc{asm.FnSkbPullData, asm.FnMapLookupElem, asm.FnMapLookupElem, asm.FnMapLookupElem, asm.FnFibLookup,
		asm.FnMapLookupElem, asm.FnL3CsumReplace, asm.FnL3CsumReplace, asm.FnRedirect}
	if len(calls) != len(want) {
		t.Fatalf("helper calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("helper calls %v, want %v", calls, want)
		}
	}
}

// The GRE match is the nf_tables rule's (nat/nft greMask, greValue).
func TestGREMatchIsNFTs(t *testing.T) {
	if GREMask != 0xef7fffff || GREValue != 0x2001880b {
		t.Fatalf("mask %#x value %#x", uint32(GREMask), uint32(GREValue))
	}
	// Data (S), ack-only (A) and seq-less packets all match; v0, the s and
	// recursion bits and the flags do not.
	for _, tc := range []struct {
		word uint32
		hit  bool
	}{
		{0x3001880b, true}, {0x2081880b, true}, {0x3081880b, true}, {0x2001880b, true},
		{0x2000880b, false}, {0x0001880b, false}, {0x2001080b, false}, {0xa001880b, false}, {0x2002880b, false},
		{0x2801880b, false}, {0x2101880b, false}, {0x2009880b, false}, {0x2041880b, false},
	} {
		if got := tc.word&GREMask == GREValue; got != tc.hit {
			t.Errorf("%#08x: match %v, want %v", tc.word, got, tc.hit)
		}
	}
	b := binary.BigEndian.AppendUint32(nil, GREValue)
	if ne32(GREValue) != int32(binary.NativeEndian.Uint32(b)) {
		t.Fatal("ne32")
	}
	if got := binary.NativeEndian.AppendUint16(nil, uint16(ne16(0x0800))); got[0] != 8 || got[1] != 0 {
		t.Fatalf("ne16(0x0800) loads as % x", got)
	}
}

func TestKeysAndValues(t *testing.T) {
	k := inKey(testMap)
	want := []byte{203, 0, 113, 5, 198, 51, 100, 1, 0x9c, 0x41, 0, 0}
	if !bytes.Equal(k[:], want) {
		t.Fatalf("in key % x, want % x", k[:], want)
	}
	if got := k.in(); got != fastpath.InKeyOf(testMap) {
		t.Fatalf("in key round trip %+v", got)
	}
	if got := outKey(testMap).out(); got != fastpath.OutKeyOf(testMap) {
		t.Fatalf("out key round trip %+v", got)
	}
	v := inValue(testMap)
	if v.Addr != testMap.Inside || v.CallID != [2]byte{0, 7} {
		t.Fatalf("in value %+v", v)
	}
	if o := outValue(testMap); o.Addr != testMap.Public || o.CallID != [2]byte{} {
		t.Fatalf("out value %+v", o)
	}
	if binary.Size(value{}) != valueSize || binary.Size(key{}) != keySize {
		t.Fatal("sizes")
	}
	// The program's offsets into the value.
	var buf bytes.Buffer
	v.Packets, v.Byts = 1, 2
	binary.Write(&buf, binary.NativeEndian, v)
	b := buf.Bytes()
	if b[valCallID+1] != 7 || b[valDir] != dirIn || binary.NativeEndian.Uint32(b[valPackets:]) != 1 ||
		binary.NativeEndian.Uint64(b[valBytes:]) != 2 || !bytes.Equal(b[valAddr:valAddr+4], testMap.Inside[:]) ||
		valPackets+4 > slotKey || slotKey+keySize != slotSize || 2*slotSize != lineSize {
		t.Fatalf("value layout % x", b)
	}
	c := v
	c.Packets = 9
	if !sameMapping(v, c) {
		t.Fatal("counters made a mapping differ")
	}
	c.CallID[1] = 8
	if sameMapping(v, c) {
		t.Fatal("Call ID ignored")
	}
	c = v
	c.Dir = dirOut
	if sameMapping(v, c) {
		t.Fatal("direction ignored")
	}
}

func TestLineCount(t *testing.T) {
	for _, tc := range []struct{ calls, lines uint32 }{{1, 2}, {2, 4}, {3, 8}, {4096, 8192}, {20100, 65536}} {
		if got := lineCount(tc.calls); got != tc.lines {
			t.Errorf("%d calls: %d lines, want %d", tc.calls, got, tc.lines)
		}
		if got := lineShift(tc.lines); 1<<(32-got) != tc.lines {
			t.Errorf("%d lines: shift %d", tc.lines, got)
		}
	}
}

// The line hash spreads what a gateway sees (consecutive inside hosts,
// consecutive Call IDs, one peer): at the load of a full table few keys
// find their line full.
func TestLineHashSpreads(t *testing.T) {
	const calls = 10000
	lines := lineCount(calls)
	shift := lineShift(lines)
	per := make([]int, lines)
	for i := range calls {
		m := conntrack.GREMap{Peer: addr("203.0.113.5"), Public: addr("198.51.100.1"), OuterID: uint16(40000 + i),
			Inside: conntrack.Addr{192, 168, byte(i >> 8), byte(i)}, InsideID: uint16(i), PeerID: uint16(i + 1)}
		for _, k := range []key{inKey(m), outKey(m)} {
			l := lineOf(k, shift)
			if l >= lines {
				t.Fatalf("line %d of %d", l, lines)
			}
			per[l]++
		}
	}
	spilled := 0
	for _, n := range per {
		spilled += max(0, n-2)
	}
	// Random keys would spill about 4 % here (two per line, a load of 0.6).
	if spilled > 2*calls*6/100 {
		t.Errorf("%d of %d keys find their line full", spilled, 2*calls)
	}
	t.Logf("%d of %d keys spill", spilled, 2*calls)
}

// sameLine returns n distinct keys of line 0.
func sameLine(shift uint32, n int) []key {
	var ks []key
	for id := 0; len(ks) < n; id++ {
		if k := makeKey(addr("203.0.113.5"), addr("198.51.100.1"), uint16(id)); lineOf(k, shift) == 0 {
			ks = append(ks, k)
		}
	}
	return ks
}

func TestLines(t *testing.T) {
	l := newLines(make([]byte, 8*lineSize), false)
	ks := sameLine(l.shift, 3)
	v := inValue(testMap)
	if !l.put(ks[0], v) || !l.put(ks[1], outValue(testMap)) {
		t.Fatal("a fresh line refused a key")
	}
	if l.put(ks[2], v) {
		t.Fatal("a third key in a line of two slots")
	}
	s, ok := l.find(ks[0])
	if !ok || s != 0 || !sameMapping(l.value(s), v) {
		t.Fatalf("find: slot %d %v, value %+v", s, ok, l.value(s))
	}
	if s, ok := l.find(ks[1]); !ok || s != 1 || l.value(s).Dir != dirOut {
		t.Fatalf("find the second: slot %d %v", s, ok)
	}
	// The program's view: the key after the value, in the packet's byte
	// order; the value as in the spill.
	if !bytes.Equal(l.mem[slotKey:slotKey+keySize], ks[0][:]) || !bytes.Equal(l.mem[valAddr:valAddr+4], testMap.Inside[:]) ||
		l.mem[valCallID+1] != byte(testMap.InsideID) || l.mem[slotSize+valDir] != dirOut {
		t.Fatalf("slot layout % x", l.mem[:lineSize])
	}
	// Counters (TestLineCounters): value reads them as they are.
	binary.NativeEndian.PutUint32(l.mem[valPackets:], 5)
	binary.NativeEndian.PutUint64(l.mem[valBytes:], 1<<40)
	if got := l.value(0); got.Packets != 5 || got.Byts != 1<<40 || l.value(0).Packets != 5 {
		t.Fatalf("counters %+v", got)
	}
	// Emptied: no key, no address, and the slot waits out the grace.
	if p, by := l.empty(0); p != 5 || by != 1<<40 || l.used(0) || !bytes.Equal(l.mem[valAddr:valAddr+4], []byte{0, 0, 0, 0}) {
		t.Fatalf("emptied: final %d packets %d bytes, used %v", p, by, l.used(0))
	}
	if _, ok := l.find(ks[0]); ok {
		t.Fatal("an emptied key found")
	}
	if l.put(ks[2], v) {
		t.Fatal("a slot reused within the grace")
	}
	l.epoch = l.epoch.Add(-slotGrace)
	if !l.put(ks[2], v) {
		t.Fatal("a slot not reused after the grace")
	}
	if p, by := l.take(0); p != 0 || by != 0 {
		t.Fatalf("a reused slot's counters kept: %d packets %d bytes", p, by)
	}
	if s, ok := l.find(ks[2]); !ok || s != 0 || l.value(s).Packets != 0 {
		t.Fatalf("reused slot %d %v", s, ok)
	}
	// Adopted lines: every empty slot waits out a grace first.
	a := newLines(make([]byte, 8*lineSize), true)
	if a.put(ks[0], v) {
		t.Fatal("an adopted empty slot used at once")
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		rel      string
		maj, min int
		ok       bool
	}{
		{"6.18.44-fc-v1272", 6, 18, true}, {"5.10.0-23-amd64", 5, 10, true}, {"6.6", 6, 6, true},
		{"5.15.0+", 5, 15, true}, {"6.1-rc1", 6, 1, true}, {"garbage", 0, 0, false},
	} {
		maj, min, ok := parseVersion(tc.rel)
		if maj != tc.maj || min != tc.min || ok != tc.ok {
			t.Errorf("%q: %d %d %v", tc.rel, maj, min, ok)
		}
	}
	if _, ok := tcxPinIndex("tcx_12"); !ok {
		t.Error("tcx_12")
	}
	if _, ok := tcxPinIndex("pptpgw_gre_in"); ok {
		t.Error("map pin taken for a link")
	}
}

func TestFirstErrors(t *testing.T) {
	var f firstErrors
	if f.add(nil); f.err() != nil {
		t.Fatal("nil error kept")
	}
	for range 5 {
		f.add(errors.New("bpf: map pptpgw_gre_in is full (max calls 2)"))
	}
	f.add(errors.New("bpf: delete from pptpgw_gre_in: bad"))
	f.add(errors.New("bpf: delete from pptpgw_gre_out: bad"))
	if got := f.err().Error(); strings.Count(got, "full") != 1 || strings.Count(got, "bad") != 1 || !strings.Contains(got, "and 5 more") {
		t.Fatalf("%q", got)
	}
}

// TestLinesModel: random puts and empties over a few lines, the clock
// moving on, against a model: a key is found exactly where it was put,
// never twice, a line never takes a third key, and no slot is reused
// within the grace.
func TestLinesModel(t *testing.T) {
	l := newLines(make([]byte, 4*lineSize), false)
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]key, 40)
	for i := range keys {
		keys[i] = makeKey(addr("203.0.113.5"), conntrack.Addr{198, 51, 100, byte(i)}, uint16(i*7919))
	}
	where := map[key]int{}         // the model: slot of every key put
	emptied := map[int]time.Time{} // when each slot was emptied
	now := time.Now()
	for step := range 5000 {
		k := keys[rng.IntN(len(keys))]
		if s, ok := where[k]; ok && rng.IntN(2) == 0 {
			l.empty(s)
			delete(where, k)
			emptied[s] = now
		} else if !ok {
			v := inValue(testMap)
			v.Addr = conntrack.Addr{192, 168, 1, byte(step)}
			free := 0
			first := int(lineOf(k, l.shift)) * 2
			for s := first; s < first+2; s++ {
				if !l.used(s) && now.Sub(emptied[s]) >= slotGrace {
					free++
				}
			}
			if got := l.put(k, v); got != (free > 0) {
				t.Fatalf("step %d: put %v with %d usable slots", step, got, free)
			} else if got {
				s, found := l.find(k)
				if !found || s/2 != first/2 || !sameMapping(l.value(s), v) {
					t.Fatalf("step %d: put key found %v in slot %d (line %d)", step, found, s, first/2)
				}
				if t0, ok := emptied[s]; ok && now.Sub(t0) < slotGrace {
					t.Fatalf("step %d: slot %d reused %v after it was emptied", step, s, now.Sub(t0))
				}
				where[k] = s
			}
		}
		if rng.IntN(50) == 0 { // the clock moves on, now and then past the grace
			d := time.Duration(rng.IntN(1500)) * time.Millisecond
			now = now.Add(d)
			l.epoch = l.epoch.Add(-d)
		}
		for _, k := range keys {
			s, found := l.find(k)
			if want, ok := where[k]; found != ok || ok && s != want {
				t.Fatalf("step %d: key in slot %d (%v), model says %d (%v)", step, s, found, want, ok)
			}
		}
	}
}
