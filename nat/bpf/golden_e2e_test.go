//go:build e2e

package bpf

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// skbCtx is the start of struct __sk_buff, the fields BPF_PROG_TEST_RUN
// takes: the frame arrives on Ifindex.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VLANPresent, VLANTCI, VLANProto, Priority uint32
	IngressIfindex, Ifindex                                                               uint32
}

const verdictPassU = uint32(0xffffffff) // TC_ACT_UNSPEC as the kernel returns it

// goldenMaps: a call of the inside host 192.168.77.10 (Call ID 7) with the
// peer 203.0.113.5 (Call ID 555), public 198.51.100.1 outer Call ID
// 40001; one whose inside host has no neighbour entry; one behind an
// interface the program is not attached to.
var goldenMaps = []conntrack.GREMap{
	{Peer: addr("203.0.113.5"), OuterID: 40001, Public: addr("198.51.100.1"), Inside: addr("192.168.77.10"), InsideID: 7, PeerID: 555},
	{Peer: addr("203.0.113.5"), OuterID: 40002, Public: addr("198.51.100.1"), Inside: addr("192.168.77.20"), InsideID: 8, PeerID: 556},
	{Peer: addr("203.0.113.5"), OuterID: 40003, Public: addr("198.51.100.1"), Inside: addr("192.168.78.10"), InsideID: 9, PeerID: 557},
}

// goldenBackend opens a backend over a fresh golden namespace.
func goldenBackend(t testing.TB) (b *Backend, ns string, ifOut, ifIn int) {
	t.Helper()
	nstest.NeedRoot(t)
	ns, ifOut, ifIn = goldenNS(t)
	b, err := Open(Config{PinDir: pinDir(t, "gold"), MaxCalls: 64, NetNS: nstest.FD(t, ns)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(true) })
	if err := b.Replace(goldenMaps); err != nil {
		t.Fatal(err)
	}
	if err := b.SetInterfaces([]int{ifOut, ifIn}); err != nil {
		t.Fatal(err)
	}
	return b, ns, ifOut, ifIn
}

// run runs the program on one frame arriving on ifindex, in ns (the FIB
// the program asks is the thread's namespace's).
func run(t testing.TB, prog *ebpf.Program, ns string, ifindex int, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	var ret uint32
	var err error
	nstest.InNS(t, ns, func() {
		opts := ebpf.RunOptions{Data: in, DataOut: out, Context: skbCtx{Ifindex: uint32(ifindex)}}
		ret, err = prog.Run(&opts)
		out = opts.DataOut
	})
	if err != nil {
		t.Fatal(err)
	}
	return ret, out
}

func TestGolden(t *testing.T) {
	b, ns, ifOut, ifIn := goldenBackend(t)
	peer := macRouter
	inbound := frame{dst: macGwOut, src: peer, ttl: 64, saddr: "203.0.113.5", daddr: "198.51.100.1", callID: 40001, payload: 4}
	outbound := frame{dst: macGwIn, src: macInside, ttl: 64, saddr: "192.168.77.10", daddr: "203.0.113.5", callID: 555, payload: 4}
	with := func(f frame, edit func(*frame)) frame { edit(&f); return f }
	cases := []struct {
		name    string
		ifindex int
		in      frame
		want    *frame // nil: passed unchanged
	}{
		{"inbound", ifOut, inbound, &frame{dst: macInside, src: macGwIn, ttl: 63, saddr: "203.0.113.5", daddr: "192.168.77.10", callID: 7, payload: 4}},
		{"inbound ack only", ifOut, with(inbound, func(f *frame) { f.greFlags, f.payload = 0x2081, 0 }),
			&frame{dst: macInside, src: macGwIn, ttl: 63, saddr: "203.0.113.5", daddr: "192.168.77.10", callID: 7, greFlags: 0x2081}},
		{"inbound seq-less TTL 2", ifOut, with(inbound, func(f *frame) { f.greFlags, f.ttl = 0x2001, 2 }),
			&frame{dst: macInside, src: macGwIn, ttl: 1, saddr: "203.0.113.5", daddr: "192.168.77.10", callID: 7, payload: 4, greFlags: 0x2001}},
		{"outbound", ifIn, outbound, &frame{dst: macRouter, src: macGwOut, ttl: 63, saddr: "198.51.100.1", daddr: "203.0.113.5", callID: 555, payload: 4}},
		{"miss: unknown Call ID", ifOut, with(inbound, func(f *frame) { f.callID = 40009 }), nil},
		{"miss: other public address", ifOut, with(inbound, func(f *frame) { f.daddr = "198.51.100.9" }), nil},
		{"miss: inbound key on the outbound side", ifIn, with(outbound, func(f *frame) { f.callID = 7 }), nil},
		{"GRE v0", ifOut, with(inbound, func(f *frame) { f.greFlags = 0x2000 }), nil},
		{"GRE v1 not PPP", ifOut, with(inbound, func(f *frame) { f.greProto = 0x0800 }), nil},
		{"GRE with checksum bit", ifOut, with(inbound, func(f *frame) { f.greFlags = 0xa001 }), nil},
		{"IP options", ifOut, with(inbound, func(f *frame) { f.verIHL = 0x46 }), nil},
		{"fragment MF", ifOut, with(inbound, func(f *frame) { f.frag = 0x2000 }), nil},
		{"fragment offset", ifOut, with(inbound, func(f *frame) { f.frag = 0x0010 }), nil},
		{"TTL 1", ifOut, with(inbound, func(f *frame) { f.ttl = 1 }), nil},
		{"TTL 0", ifOut, with(inbound, func(f *frame) { f.ttl = 0 }), nil},
		{"another host's frame", ifOut, with(inbound, func(f *frame) { f.dst = mac("02:00:00:00:09:09") }), nil},
		{"no neighbour", ifOut, with(inbound, func(f *frame) { f.callID = 40002 }), nil},
		{"egress not ours", ifOut, with(inbound, func(f *frame) { f.callID = 40003 }), nil},
		{"too big for the inside MTU", ifOut, with(inbound, func(f *frame) { f.payload = 1400 }), nil},
	}
	nstest.Sh(t, "ip", "-n", ns, "link", "set", "bpfgi", "mtu", "1000")
	for _, tc := range cases {
		in := tc.in.bytes()
		ret, out := run(t, b.Program(), ns, tc.ifindex, in)
		want, wantRet := in, verdictPassU
		if tc.want != nil {
			want, wantRet = tc.want.bytes(), verdictRedirect
		}
		if ret != wantRet || !bytes.Equal(out, want) {
			t.Errorf("%s: verdict %d, want %d\n got  %s\n want %s", tc.name, int32(ret), int32(wantRet),
				hex.EncodeToString(out), hex.EncodeToString(want))
		}
	}
	// A frame too short for the headers, and one that is not IPv4.
	short := inbound.bytes()[:40]
	if ret, out := run(t, b.Program(), ns, ifOut, short); ret != verdictPassU || !bytes.Equal(out, short) {
		t.Errorf("short frame: verdict %d", int32(ret))
	}
	trunc := inbound.bytes()
	trunc = trunc[:len(trunc)-1]
	if ret, out := run(t, b.Program(), ns, ifOut, trunc); ret != verdictPassU || !bytes.Equal(out, trunc) {
		t.Errorf("frame shorter than its total length: verdict %d", int32(ret))
	}
	arp := inbound.bytes()
	arp[12], arp[13] = 0x08, 0x06
	if ret, _ := run(t, b.Program(), ns, ifOut, arp); ret != verdictPassU {
		t.Errorf("ARP: verdict %d", int32(ret))
	}

	// The counters: three inbound packets of the first call, one
	// outbound; bytes are IPv4 lengths.
	in := map[fastpath.InKey]fastpath.Counters{}
	out := map[fastpath.OutKey]fastpath.Counters{}
	if err := b.Counters(func(k fastpath.InKey, c fastpath.Counters) { in[k] = c },
		func(k fastpath.OutKey, c fastpath.Counters) { out[k] = c }); err != nil {
		t.Fatal(err)
	}
	ci := in[fastpath.InKeyOf(goldenMaps[0])]
	co := out[fastpath.OutKeyOf(goldenMaps[0])]
	if ci.Packets != 3 || ci.Bytes != (20+12+4)+(20+12)+(20+8+4) {
		t.Errorf("inbound counters %+v", ci)
	}
	if co.Packets != 1 || co.Bytes != 20+12+4 {
		t.Errorf("outbound counters %+v", co)
	}
	if c := in[fastpath.InKeyOf(goldenMaps[1])]; c.Packets != 0 {
		t.Errorf("the call without a neighbour counted %+v", c)
	}
	if len(in) != 3 || len(out) != 3 {
		t.Errorf("%d inbound and %d outbound entries", len(in), len(out))
	}
}

// TestLinesAndSpill: the program finds every call Go put in a line or in
// the spill (its line hash is Go's), and translates it.
func TestLinesAndSpill(t *testing.T) {
	b, ns, ifOut, _ := goldenBackend(t)
	var calls []conntrack.GREMap
	for i := range 64 { // 128 keys in 128 lines of the golden backend's 64 calls
		calls = append(calls, conntrack.GREMap{Peer: conntrack.Addr{203, 0, 113, byte(1 + i%7)}, OuterID: uint16(1000 + 37*i),
			Public: addr("198.51.100.1"), Inside: addr("192.168.77.10"), InsideID: uint16(i + 1), PeerID: uint16(i)})
	}
	if err := b.Replace(calls); err != nil {
		t.Fatal(err)
	}
	where := map[string]int{}
	for _, m := range calls {
		_, w := entry(t, b, inKey(m))
		where[w]++
		in := frame{dst: macGwOut, src: macRouter, ttl: 64, saddr: netip.AddrFrom4(m.Peer).String(), daddr: "198.51.100.1",
			callID: m.OuterID, payload: 4}.bytes()
		ret, out := run(t, b.Program(), ns, ifOut, in)
		if ret != verdictRedirect || binary.BigEndian.Uint16(out[offCallID:]) != m.InsideID ||
			!bytes.Equal(out[offDaddr:offDaddr+4], m.Inside[:]) {
			t.Fatalf("call %+v (in the %s): verdict %d, out %x", m, w, int32(ret), out[:minFrame])
		}
	}
	if where["line"] == 0 || where["spill"] == 0 || where[""] != 0 {
		t.Fatalf("inbound keys by place %v: want both lines and spill used", where)
	}
	t.Logf("inbound keys by place %v", where)
}

// TestSourcePolicyRouting: outbound GRE is routed by its inside source,
// as the stack routes before source NAT (and nf_tables translates it in
// postrouting): a rule for the inside host wins, one for the public
// address is not asked.
func TestSourcePolicyRouting(t *testing.T) {
	b, ns, _, ifIn := goldenBackend(t)
	other := mac("02:00:00:00:07:03")
	for _, args := range [][]string{
		{"neigh", "replace", "198.51.100.3", "lladdr", other.String(), "dev", "bpfgo", "nud", "permanent"},
		{"route", "add", "203.0.113.0/24", "via", "198.51.100.3", "table", "100"},
		{"route", "add", "blackhole", "203.0.113.0/24", "table", "101"},
		{"rule", "add", "from", "192.168.77.10", "lookup", "100"},
		{"rule", "add", "from", "198.51.100.1", "lookup", "101"},
	} {
		nstest.Sh(t, append([]string{"ip", "-n", ns}, args...)...)
	}
	in := frame{dst: macGwIn, src: macInside, ttl: 64, saddr: "192.168.77.10", daddr: "203.0.113.5", callID: 555, payload: 4}.bytes()
	want := frame{dst: other, src: macGwOut, ttl: 63, saddr: "198.51.100.1", daddr: "203.0.113.5", callID: 555, payload: 4}.bytes()
	if ret, out := run(t, b.Program(), ns, ifIn, in); ret != verdictRedirect || !bytes.Equal(out, want) {
		t.Fatalf("verdict %d\n got  %s\n want %s", int32(ret), hex.EncodeToString(out), hex.EncodeToString(want))
	}
}
