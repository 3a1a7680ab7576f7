package nat_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// A router on the outside path (between the gateway and the PAC) that
// sends ICMP errors to the public address.
var router = netip.MustParseAddr("203.0.113.1")

// icmpErr builds an ICMP error of type/code from src to dst quoting the
// first n bytes of orig (n < 0: all of it). rest is the 4-byte field after
// the checksum (the next-hop MTU for fragmentation-needed).
func icmpErr(src, dst netip.Addr, typ, code uint8, rest uint32, orig []byte, n int) []byte {
	if n >= 0 {
		orig = orig[:n]
	}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code),
		Id: uint16(rest >> 16), Seq: uint16(rest)}
	ip := ip4(src, dst, layers.IPProtocolICMPv4)
	ip.Flags = 0
	return serialize(ip, ic, gopacket.Payload(orig))
}

// bigFrame is a PPP frame too big for the 1280-byte path of fragNeeded:
// only about such a packet is a fragmentation-needed plausible.
var bigFrame = bytes.Repeat([]byte{0x5a}, 1400)

// fragNeeded is an RFC 1191 fragmentation-needed error with next-hop MTU 1280.
func fragNeeded(dst netip.Addr, orig []byte, n int) []byte {
	return icmpErr(router, dst, 3, 4, 1280, orig, n)
}

// icmpChecksumOK checks the ICMP checksum of an IPv4 packet from scratch.
func icmpChecksumOK(p []byte) bool { return fold16(sum16(0, p[ihl(p):])) == 0xffff }

// quotedIPv4ChecksumOK checks the checksum of the IPv4 header an ICMP error quotes.
func quotedIPv4ChecksumOK(p []byte) bool { return ipv4ChecksumOK(p[ihl(p)+8:]) }

// TestICMPInGolden: errors about GRE the gateway translated, arriving at
// the public address, come out exactly as the router would have sent them
// to the inside client had there been no NAT; everything else passes
// byte for byte.
func TestICMPInGolden(t *testing.T) {
	big := bytes.Repeat([]byte{0xa5}, 1400)
	// What each client sent, and what left the gateway (source public).
	sent1 := grePkt(client1.Addr(), pac.Addr(), greHdr(pacID1, 7, big))
	out1 := grePkt(public, pac.Addr(), greHdr(pacID1, 7, big))
	sent2 := grePkt(client2.Addr(), pac.Addr(), greHdr(pacID2, 9, big))
	out2 := grePkt(public, pac.Addr(), greHdr(pacID2, 9, big))
	// An ack-only GRE packet: 12 bytes of header, no payload.
	ackOnly := func(s netip.Addr) []byte {
		return grePkt(s, pac.Addr(), []byte{0x20, 0x81, 0x88, 0x0b, 0, 0, byte(pacID1 >> 8), byte(pacID1 & 0xff), 0, 0, 0, 5})
	}
	udpIP := ip4(public, pac.Addr(), layers.IPProtocolUDP)
	udpL := &layers.UDP{SrcPort: 5000, DstPort: 53}
	udpL.SetNetworkLayerForChecksum(udpIP)
	udp := serialize(udpIP, udpL, gopacket.Payload([]byte("0123456789")))
	greV0 := grePkt(public, pac.Addr(), append([]byte{0, 0, 0x08, 0}, pppFrame...))
	laterFrag := edit(out1, func(b []byte) { b[6], b[7] = 0x00, 0xb9; setIPv4Checksum(b) })
	// The quote of a header with options (IHL 6).
	withOpts := func(s netip.Addr) []byte {
		ip := ip4(s, pac.Addr(), layers.IPProtocolGRE)
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		return serialize(ip, gopacket.Payload(greHdr(pacID1, 7, big)))
	}
	other := netip.MustParseAddr("198.51.100.77")

	cases := []struct {
		name   string
		in     []byte
		hook   nat.Hook
		want   []byte // nil: unchanged
		reason nat.Reason
	}{
		// RFC 792's minimum: the IP header and 8 bytes of GRE, exactly the Call ID's end.
		{"frag-needed, 8 bytes quoted", fragNeeded(public, out1, 28), nat.HookGREIn,
			fragNeeded(client1.Addr(), sent1, 28), nat.ReasonICMPIn},
		// Linux quotes up to 576 bytes of the whole error.
		{"frag-needed, 548 bytes quoted", fragNeeded(public, out1, 548), nat.HookGREIn,
			fragNeeded(client1.Addr(), sent1, 548), nat.ReasonICMPIn},
		{"frag-needed, the second call", fragNeeded(public, out2, -1), nat.HookGREIn,
			fragNeeded(client2.Addr(), sent2, -1), nat.ReasonICMPIn},
		{"time exceeded", icmpErr(router, public, 11, 0, 0, out2, 28), nat.HookGREIn,
			icmpErr(router, client2.Addr(), 11, 0, 0, sent2, 28), nat.ReasonICMPIn},
		{"reassembly time exceeded, ack-only GRE", icmpErr(router, public, 11, 1, 0, ackOnly(public), -1), nat.HookGREIn,
			icmpErr(router, client1.Addr(), 11, 1, 0, ackOnly(client1.Addr()), -1), nat.ReasonICMPIn},
		{"frag-needed, MTU 576", icmpErr(router, public, 3, 4, 576, out1, 28), nat.HookGREIn,
			icmpErr(router, client1.Addr(), 3, 4, 576, sent1, 28), nat.ReasonICMPIn},
		{"quoted header with options", fragNeeded(public, withOpts(public), 32), nat.HookGREIn,
			fragNeeded(client1.Addr(), withOpts(client1.Addr()), 32), nat.ReasonICMPIn},

		{"unknown peer Call ID", fragNeeded(public, grePkt(public, pac.Addr(), greHdr(0x4444, 7, pppFrame)), 28),
			nat.HookGREIn, nil, nat.ReasonICMPUnknownCall},
		{"quoted source not a call's public address", fragNeeded(other, grePkt(other, pac.Addr(), greHdr(pacID1, 7, pppFrame)), 28),
			nat.HookGREIn, nil, nat.ReasonICMPUnknownCall},
		{"sent to another address than the quoted source", fragNeeded(other, out1, 28), nat.HookGREIn, nil, nat.ReasonICMPUnknownCall},
		{"quoted GRE 7 bytes", fragNeeded(public, out1, 27), nat.HookGREIn, nil, nat.ReasonTruncated},
		{"quoted IPv4 header cut", fragNeeded(public, out1, 19), nat.HookGREIn, nil, nat.ReasonTruncated},
		{"ICMP header only", fragNeeded(public, out1, 0), nat.HookGREIn, nil, nat.ReasonTruncated},
		{"ICMP cut in its header", fragNeeded(public, out1, 0)[:24], nat.HookGREIn, nil, nat.ReasonTruncated},
		{"quoted UDP", fragNeeded(public, udp, -1), nat.HookGREIn, nil, nat.ReasonNotPPTP},
		{"quoted GRE v0", fragNeeded(public, greV0, -1), nat.HookGREIn, nil, nat.ReasonNotPPTPGRE},
		{"quoted later fragment", fragNeeded(public, laterFrag, 28), nat.HookGREIn, nil, nat.ReasonFragment},
		{"echo request", icmpErr(router, public, 8, 0, 0x12340001, out1, 28), nat.HookGREIn, nil, nat.ReasonNotPPTP},
		{"parameter problem", icmpErr(router, public, 12, 0, 0, out1, 28), nat.HookGREIn, nil, nat.ReasonNotPPTP},
		// Only errors arriving at a local address are translated.
		{"forwarded error", fragNeeded(public, out1, 28), nat.HookGREOut, nil, nat.ReasonNotPPTP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
			setUp(w)
			p := append([]byte(nil), c.in...)
			v, r := w.Process(p, c.hook, 5)
			wantV := nat.Accept
			if c.want != nil {
				wantV = nat.AcceptModified
			}
			if v != wantV || r != c.reason {
				t.Fatalf("verdict %v %v, want %v %v", v, r, wantV, c.reason)
			}
			want := c.want
			if want == nil {
				want = c.in
			}
			if !bytes.Equal(p, want) {
				t.Fatalf("packet (-want +got):\n-%x\n+%x", want, p)
			}
			if c.want != nil && (!ipv4ChecksumOK(p) || !icmpChecksumOK(p) || !quotedIPv4ChecksumOK(p)) {
				t.Fatalf("checksums: outer %v icmp %v quoted %v", ipv4ChecksumOK(p), icmpChecksumOK(p), quotedIPv4ChecksumOK(p))
			}
		})
	}
}

// TestICMPInCallStates: errors about a call are translated while its GRE
// is (established, closing), not once it has ended or for an identity call.
func TestICMPInCallStates(t *testing.T) {
	out1 := grePkt(public, pac.Addr(), greHdr(pacID1, 7, bigFrame))
	e, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	c1, _ := setUp(w)
	try := func(want nat.Reason) {
		t.Helper()
		if _, r := w.Process(fragNeeded(public, out1, 28), nat.HookGREIn, 6); r != want {
			t.Fatalf("reason %v, want %v", r, want)
		}
	}
	try(nat.ReasonICMPIn)
	w.Process(c1.out(pptpMsg(mCCRQ, 0)), nat.HookControl, 7) // closing
	try(nat.ReasonICMPIn)
	w.Process(c1.in(pptpMsg(mCDN, pacID1, 0)), nat.HookControl, 8) // gone
	try(nat.ReasonICMPUnknownCall)
	if e.Count(nat.ReasonICMPIn) != 2 || e.Count(nat.ReasonICMPUnknownCall) != 1 {
		t.Errorf("counts icmp_in %d icmp_unknown_call %d", e.Count(nat.ReasonICMPIn), e.Count(nat.ReasonICMPUnknownCall))
	}

	// Identity: the kernel does not NAT the connection, so the inside end's
	// GRE left with its own address and errors reach it without help.
	_, wi := newEngine(fakeResolver{identity: true}, nat.Config{}, conntrack.Limits{})
	setUp(wi)
	if _, r := wi.Process(fragNeeded(public, out1, 28), nat.HookGREIn, 6); r != nat.ReasonICMPUnknownCall {
		t.Errorf("identity call: reason %v", r)
	}
}

// TestICMPInZeroAllocs: the ICMP path allocates nothing.
func TestICMPInZeroAllocs(t *testing.T) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	setUp(w)
	tmpl := fragNeeded(public, grePkt(public, pac.Addr(), greHdr(pacID2, 7, bigFrame)), -1)
	buf := make([]byte, len(tmpl))
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"translated", tmpl},
		{"unknown call", fragNeeded(public, grePkt(public, pac.Addr(), greHdr(0x4444, 7, pppFrame)), 28)},
	} {
		buf = append(buf[:0], c.pkt...)
		allocs := testing.AllocsPerRun(1000, func() {
			copy(buf, c.pkt)
			w.Process(buf, nat.HookGREIn, 9)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per packet, want 0", c.name, allocs)
		}
	}
}

func BenchmarkICMPIn(b *testing.B) {
	_, w := newEngine(fakeResolver{}, nat.Config{}, conntrack.Limits{})
	setUp(w)
	tmpl := fragNeeded(public, grePkt(public, pac.Addr(), greHdr(pacID2, 7, bigFrame)), 28)
	buf := make([]byte, len(tmpl))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		if v, _ := w.Process(buf, nat.HookGREIn, 9); v != nat.AcceptModified {
			b.Fatal(v)
		}
	}
}

// icmpSeeds extend FuzzProcess's corpus with ICMP errors (files icmp-*).
func icmpSeeds() []fuzzSeed {
	out1 := grePkt(public, pac.Addr(), greHdr(pacID1, 7, pppFrame))
	return []fuzzSeed{
		{"frag-needed", fragNeeded(public, out1, -1), uint8(nat.HookGREIn)},
		{"frag-needed-min", fragNeeded(public, out1, 28), uint8(nat.HookGREIn)},
		{"time-exceeded-unknown", icmpErr(router, public, 11, 0, 0, grePkt(public, pac.Addr(), greHdr(0x4444, 7, pppFrame)), 28), uint8(nat.HookGREIn)},
	}
}

// TestICMPFuzzCorpus writes (PPTPGW_WRITE_FUZZ_CORPUS=1) or checks the
// ICMP seeds of FuzzProcess.
func TestICMPFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzProcess")
	for _, s := range icmpSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s.pkt, rune(s.hook))
		path := filepath.Join(dir, "icmp-"+s.name)
		if os.Getenv("PPTPGW_WRITE_FUZZ_CORPUS") == "1" {
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != body {
			t.Errorf("%s missing or stale (err %v): run PPTPGW_WRITE_FUZZ_CORPUS=1 go test -run TestICMPFuzzCorpus ./nat", path, err)
		}
	}
}
