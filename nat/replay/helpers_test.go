package replay_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/alg/pptptest"
	"github.com/pptpgw/pptpgw/nat/replay"
)

// The test helpers below are written independently of the package's own
// parsing: frames are decoded with gopacket, checksums are recomputed from
// scratch and control streams are reassembled by sequence number.

// publicIP is the gateway's public address in every replay here.
var publicIP = netip.MustParseAddr("198.51.100.1")

// capturePath returns the path of a capture in the repository's
// testdata/pcaps; a missing one fails the test.
func capturePath(t testing.TB, name string) string { return pptptest.CapturePath(t, name) }

// packet is one input or output packet: its IPv4 bytes (nil when the frame
// holds no IPv4 packet at the network layer) and its timestamp.
type packet struct {
	ts time.Time
	ip []byte
}

// readPackets reads a pcap or pcapng and returns every frame's outermost
// network-layer IPv4 packet, cut to its Total Length.
func readPackets(t testing.TB, b []byte) (pkts []packet, lt layers.LinkType) {
	t.Helper()
	frames, lt := pptptest.Frames(t, b)
	for _, f := range frames {
		pkts = append(pkts, packet{ts: f.TS, ip: networkIPv4(lt, f.Data)})
	}
	return pkts, lt
}

// networkIPv4 decodes a frame with gopacket and returns a copy of its first
// network layer if that is IPv4 (GRE-in-IPv6 and IPv6 give nil).
func networkIPv4(lt layers.LinkType, data []byte) []byte {
	if lt == layers.LinkTypeRaw && len(data) >= 20 && data[0]>>4 == 4 {
		// Fast path for the replay's own output (and synthetic input).
		// pcapgo returns a fresh slice per packet: no copy needed.
		if n := int(binary.BigEndian.Uint16(data[2:])); n >= 20 && n <= len(data) {
			data = data[:n:n]
		}
		return data
	}
	p := gopacket.NewPacket(data, lt, gopacket.DecodeOptions{NoCopy: true})
	nl := p.NetworkLayer()
	ip4, ok := nl.(*layers.IPv4)
	if !ok {
		return nil
	}
	out := append([]byte(nil), ip4.Contents...)
	return append(out, ip4.Payload...)
}

// isPPTP says whether an IPv4 packet is PPTP (DESIGN.md "replay"): TCP to
// or from port 1723, or GRE version 1.
func isPPTP(ip []byte) bool {
	if len(ip) < 20 {
		return false
	}
	l4 := ip[int(ip[0]&0x0f)*4:]
	switch ip[9] {
	case 6:
		return len(l4) >= 20 && (binary.BigEndian.Uint16(l4) == 1723 || binary.BigEndian.Uint16(l4[2:]) == 1723)
	case 47:
		return len(l4) >= 4 && l4[1]&0x07 == 1
	}
	return false
}

func src(ip []byte) netip.Addr { return netip.AddrFrom4([4]byte(ip[12:16])) }
func dst(ip []byte) netip.Addr { return netip.AddrFrom4([4]byte(ip[16:20])) }
func l4(ip []byte) []byte      { return ip[int(ip[0]&0x0f)*4:] }
func isTCP(ip []byte) bool     { return ip[9] == 6 }
func isGRE(ip []byte) bool     { return ip[9] == 47 }

// greCallID is the Call ID (bytes 6-7) of a GRE v1 packet.
func greCallID(ip []byte) uint16 { return binary.BigEndian.Uint16(l4(ip)[6:]) }

// tcpPayload is the TCP payload of a TCP packet.
func tcpPayload(ip []byte) []byte {
	t := l4(ip)
	return t[int(t[12]>>4)*4:]
}

func tcpSeq(ip []byte) uint32 { return binary.BigEndian.Uint32(l4(ip)[4:]) }

// sum16 and fold16: the RFC 1071 sum, over whole headers (not the
// incremental update under test).
var (
	sum16  = hdr.Sum
	fold16 = hdr.Fold
)

// ipv4ChecksumOK recomputes the IPv4 header checksum from scratch.
func ipv4ChecksumOK(ip []byte) bool {
	return fold16(sum16(0, ip[:int(ip[0]&0x0f)*4])) == 0xffff
}

// tcpPseudoSum is the sum of the TCP pseudo-header of ip.
func tcpPseudoSum(ip []byte) uint32 {
	return hdr.TCPPseudoSum(ip, len(l4(ip)))
}

// tcpChecksumOK recomputes the TCP checksum from scratch.
func tcpChecksumOK(ip []byte) bool {
	return fold16(sum16(tcpPseudoSum(ip), l4(ip))) == 0xffff
}

// fixChecksums recomputes the IPv4 header checksum and, for TCP, the TCP
// checksum from scratch.
func fixChecksums(ip []byte) {
	ihl := int(ip[0]&0x0f) * 4
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fold16(sum16(0, ip[:ihl])))
	if isTCP(ip) {
		t := l4(ip)
		t[16], t[17] = 0, 0
		binary.BigEndian.PutUint16(t[16:], ^fold16(sum16(tcpPseudoSum(ip), t)))
	}
}

// writeRaw writes packets as a LINKTYPE_RAW pcap.
func writeRaw(t testing.TB, pkts []packet) []byte {
	t.Helper()
	var b bytes.Buffer
	n := 24
	for _, p := range pkts {
		n += 16 + len(p.ip)
	}
	b.Grow(n)
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.ip), Length: len(p.ip)}
		if err := w.WritePacket(ci, p.ip); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// result is one replay's summary and output files.
type result struct {
	sum      *replay.Summary
	out, lan []packet
	outPcap  []byte
}

func prefixes(t testing.TB, inside []string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range inside {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err2 := netip.ParseAddr(s)
			if err2 != nil {
				t.Fatalf("bad prefix %q: %v", s, err)
			}
			p = netip.PrefixFrom(a, 32)
		}
		ps = append(ps, p.Masked())
	}
	return ps
}

// runReplay replays capture b in-process.
func runReplay(t testing.TB, b []byte, inside []string) result {
	t.Helper()
	var out, lan bytes.Buffer
	sum, err := replay.Run(bytes.NewReader(b), &out, &lan, replay.Options{Inside: prefixes(t, inside), Public: publicIP})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	r := result{sum: sum, outPcap: out.Bytes()}
	var lt layers.LinkType
	if r.out, lt = readPackets(t, out.Bytes()); lt != layers.LinkTypeRaw {
		t.Fatalf("--out link type %v, want raw", lt)
	}
	if r.lan, lt = readPackets(t, lan.Bytes()); lt != layers.LinkTypeRaw {
		t.Fatalf("--lan-out link type %v, want raw", lt)
	}
	return r
}

// insideOf says whether a is inside one of the prefixes.
func insideOf(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// pptpPackets returns the input's PPTP packets that cross the would-be
// gateway (exactly one end inside), with their indexes in the input, and
// how many input packets are not such packets.
func pptpPackets(in []packet, ps []netip.Prefix) (pptp []packet, skipped int) {
	for _, p := range in {
		if p.ip == nil || !isPPTP(p.ip) || insideOf(ps, src(p.ip)) == insideOf(ps, dst(p.ip)) {
			skipped++
			continue
		}
		pptp = append(pptp, p)
	}
	return pptp, skipped
}
