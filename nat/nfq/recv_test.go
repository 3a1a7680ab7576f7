package nfq

import (
	"bytes"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func packetAttrs(t testing.TB, attrs []netlink.Attribute) []byte {
	t.Helper()
	ad, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 1}, ad...)
}

func TestParsePacket(t *testing.T) {
	payload := bytes.Repeat([]byte{0x45}, 61)
	m := packetAttrs(t, []netlink.Attribute{
		{Type: nfqaPacketHdr, Data: []byte{0, 0, 1, 2, 0x08, 0x00, 3}},
		{Type: nfqaMark, Data: []byte{0, 0, 0, 9}},
		{Type: nfqaIfIndexInDev, Data: []byte{0, 0, 0, 4}},
		{Type: nfqaIfIndexOutDev, Data: []byte{1, 2, 3, 4}},
		{Type: 4, Data: make([]byte, 16)}, // timestamp: skipped
		{Type: nfqaPayload, Data: payload},
	})
	p, ok := parsePacket(m)
	want := Meta{Hook: 3, HasInDev: true, InDev: 4, OutDev: 0x01020304}
	if !ok || !p.hasID || p.id != 0x102 || p.meta != want || p.mark != 9 || !bytes.Equal(p.payload, payload) {
		t.Fatalf("parsed %+v, %v", p, ok)
	}
	if cap(p.payload) != len(payload) {
		t.Fatal("payload's capacity reaches past it")
	}
	p, ok = parsePacket(packetAttrs(t, []netlink.Attribute{{Type: nfqaPacketHdr, Data: []byte{0, 0, 0, 7, 0x08, 0x00, 0}}}))
	if !ok || p.id != 7 || p.payload != nil || p.meta != (Meta{}) {
		t.Fatalf("parsed %+v, %v", p, ok)
	}
	for _, bad := range [][]byte{
		{2, 0},
		append(packetAttrs(t, nil), 200, 0, 1, 0),                                            // attribute longer than the message
		packetAttrs(t, []netlink.Attribute{{Type: nfqaPacketHdr, Data: []byte{0, 0, 0, 7}}}), // short header
		packetAttrs(t, []netlink.Attribute{{Type: nfqaIfIndexOutDev, Data: []byte{0, 7}}}),   // short ifindex
	} {
		if _, ok := parsePacket(bad); ok {
			t.Fatalf("accepted %x", bad)
		}
	}
	if a := testing.AllocsPerRun(100, func() { parsePacket(m) }); a != 0 {
		t.Fatalf("%v allocs per packet", a)
	}
}

func FuzzParsePacket(f *testing.F) {
	f.Add([]byte{2, 0, 0, 1, 8, 0, 1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := parsePacket(b)
		if ok && p.payload != nil && len(p.payload) > len(b) {
			t.Fatal("payload beyond the message")
		}
	})
}
