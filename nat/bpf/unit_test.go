package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
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
	insns := Instructions(asm.FnKtimeGetCoarseNs)
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
	if refs[MapCallsName] != 1 || refs[MapDevName] != 2 || len(refs) != 2 {
		t.Fatalf("map references %v", refs)
	}
	if n := len(insns); n > 200 {
		t.Errorf("%d instructions: the program grew", n)
	}
	var calls []asm.BuiltinFunc
	for _, ins := range insns {
		if ins.IsBuiltinCall() {
			calls = append(calls, asm.BuiltinFunc(ins.Constant))
		}
	}
	want := []asm.BuiltinFunc{asm.FnSkbPullData, asm.FnMapLookupElem, asm.FnMapLookupElem, asm.FnFibLookup, asm.FnMapLookupElem, asm.FnL3CsumReplace,
		asm.FnL3CsumReplace, asm.FnKtimeGetCoarseNs, asm.FnRedirect}
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
		t.Fatalf("mask %#x value %#x", GREMask, GREValue)
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
	v.Packets, v.Byts, v.Last = 1, 2, 3
	binary.Write(&buf, binary.NativeEndian, v)
	b := buf.Bytes()
	if b[valCallID+1] != 7 || binary.NativeEndian.Uint64(b[valPackets:]) != 1 ||
		binary.NativeEndian.Uint64(b[valBytes:]) != 2 || binary.NativeEndian.Uint64(b[valLast:]) != 3 {
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

func TestClockWallOf(t *testing.T) {
	wall := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	c := Clock{Mono: 1_000_000_000_000, Wall: wall}
	if got := c.WallOf(0); !got.IsZero() {
		t.Fatalf("never: %v", got)
	}
	if got := c.WallOf(1_000_000_000_000 - 2_500_000_000); !got.Equal(wall.Add(-2500 * time.Millisecond)) {
		t.Fatalf("2.5 s ago: %v", got)
	}
	now, err := Now()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(now.WallOf(uint64(now.Mono))); d < 0 || d > time.Second {
		t.Fatalf("now converts to %v ago", d)
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
