package replay_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestReplayLinkTypes: the same packets framed as Ethernet (padded to the
// 60-byte minimum), Ethernet with two VLAN tags, Linux cooked v1 and v2,
// and Ethernet in pcapng give the same --out as raw IP.
func TestReplayLinkTypes(t *testing.T) {
	in := syntheticConversation()
	ref := runReplay(t, writeRaw(t, in), synInside)
	mac := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	ether := func(ip []byte) []byte {
		f := append(append(append([]byte(nil), mac...), 0x08, 0x00), ip...)
		for len(f) < 60 {
			f = append(f, 0) // Ethernet padding beyond the IP Total Length
		}
		return f
	}
	vlan := func(ip []byte) []byte {
		return append(append(append([]byte(nil), mac...), 0x88, 0xa8, 0, 100, 0x81, 0x00, 0, 200, 0x08, 0x00), ip...)
	}
	sll := func(ip []byte) []byte {
		h := []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}
		return append(h, ip...)
	}
	sll2 := func(ip []byte) []byte {
		h := []byte{0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
		return append(h, ip...)
	}
	cases := []struct {
		name  string
		lt    layers.LinkType
		frame func([]byte) []byte
		ng    bool
	}{
		{"ethernet", layers.LinkTypeEthernet, ether, false},
		{"vlan", layers.LinkTypeEthernet, vlan, false},
		{"linux-sll", layers.LinkTypeLinuxSLL, sll, false},
		{"linux-sll2", layers.LinkTypeLinuxSLL2, sll2, false},
		{"pcapng", layers.LinkTypeEthernet, ether, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			type writer interface {
				WritePacket(gopacket.CaptureInfo, []byte) error
			}
			var w writer
			if c.ng {
				ng, err := pcapgo.NewNgWriter(&b, c.lt)
				if err != nil {
					t.Fatal(err)
				}
				w = ng
			} else {
				pw := pcapgo.NewWriter(&b)
				if err := pw.WriteFileHeader(65535, c.lt); err != nil {
					t.Fatal(err)
				}
				w = pw
			}
			for _, p := range in {
				f := c.frame(p.ip)
				if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(f), Length: len(f)}, f); err != nil {
					t.Fatal(err)
				}
			}
			if ng, ok := w.(*pcapgo.NgWriter); ok {
				if err := ng.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if c.ng && binary.BigEndian.Uint32(b.Bytes()) != 0x0A0D0D0A {
				t.Fatal("not pcapng")
			}
			r := runReplay(t, b.Bytes(), synInside)
			if r.sum.PacketsIn != uint64(len(in)) || r.sum.Skipped != 0 || len(r.out) != len(ref.out) {
				t.Fatalf("summary %+v, %d packets out, want %d", r.sum, len(r.out), len(ref.out))
			}
			for i := range ref.out {
				if !bytes.Equal(r.out[i].ip, ref.out[i].ip) || !r.out[i].ts.Equal(ref.out[i].ts) ||
					!bytes.Equal(r.lan[i].ip, ref.lan[i].ip) {
					t.Fatalf("packet %d differs from the raw-IP run", i+1)
				}
			}
		})
	}
}
