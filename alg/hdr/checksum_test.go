package hdr

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// RFC 1071 section 3's numerical example.
func TestSumRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if s := Sum(0, b); s != 0x2ddf0 {
		t.Fatalf("Sum = %#x, want 0x2ddf0", s)
	}
	if f := Fold(Sum(0, b)); f != 0xddf2 {
		t.Fatalf("Fold = %#x, want 0xddf2", f)
	}
	if s := Sum(0, []byte{0x12, 0x34, 0x56}); s != 0x1234+0x5600 {
		t.Fatalf("odd length: Sum = %#x", s)
	}
}

// An incremental update (RFC 1624) gives the checksum computed from
// scratch, for random headers, words and addresses, the edge values
// included.
func TestUpdateMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(1624, 1071))
	addrs := [][4]byte{{0, 0, 0, 0}, {255, 255, 255, 255}, {192, 168, 1, 10}, {203, 0, 113, 5}}
	for i := range 2000 {
		ip := make([]byte, IPv4MinLen)
		for j := range ip {
			ip[j] = byte(rng.Uint32())
		}
		ip[IPv4OffVersionIHL] = 0x45
		ip[IPv4OffChecksum], ip[IPv4OffChecksum+1] = 0, 0
		binary.BigEndian.PutUint16(ip[IPv4OffChecksum:], Checksum(0, ip))

		var a [4]byte
		if i < len(addrs) {
			a = addrs[i]
		} else {
			binary.BigEndian.PutUint32(a[:], rng.Uint32())
		}
		off := IPv4OffSrc
		if i&1 == 1 {
			off = IPv4OffDst
		}
		SetIPv4Addr(ip, off, a)
		if Checksum(0, ip) != 0 {
			t.Fatalf("after SetIPv4Addr(%v at %d) the header checksum does not verify: % x", a, off, ip)
		}

		// A 16-bit word through WordChange.
		o := binary.BigEndian.Uint16(ip[IPv4OffTotalLength:])
		n := uint16(rng.Uint32())
		binary.BigEndian.PutUint16(ip[IPv4OffTotalLength:], n)
		UpdateAt(ip[IPv4OffChecksum:], WordChange(o, n))
		if Checksum(0, ip) != 0 {
			t.Fatalf("after WordChange(%#x, %#x) the header checksum does not verify: % x", o, n, ip)
		}
	}
}

// The TCP pseudo-header (RFC 9293 section 3.1): addresses, zero, protocol,
// TCP length.
func TestTCPPseudoSum(t *testing.T) {
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, ProtoTCP, 0, 0, 192, 168, 1, 10, 203, 0, 113, 7}
	want := uint32(0xc0a8+0x010a+0xcb00+0x7107) + 6 + 32
	if got := TCPPseudoSum(ip, 32); got != want {
		t.Fatalf("TCPPseudoSum = %#x, want %#x", got, want)
	}
}

func TestHeaderLens(t *testing.T) {
	if n := IPv4HeaderLen([]byte{0x46}); n != 24 {
		t.Errorf("IPv4HeaderLen(0x46) = %d", n)
	}
	if v := IPv4Version([]byte{0x46}); v != 4 {
		t.Errorf("IPv4Version(0x46) = %d", v)
	}
	tcp := make([]byte, TCPMinLen)
	tcp[TCPOffDataOffset] = 0x80
	if n := TCPHeaderLen(tcp); n != 32 {
		t.Errorf("TCPHeaderLen = %d", n)
	}
}
