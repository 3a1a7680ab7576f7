package nat_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// fuzzSeed is a golden packet for FuzzProcess: its bytes and the hook
// byte (bits 0-1: the hook tried first, bit 2: --local-gre accept).
type fuzzSeed struct {
	name string
	pkt  []byte
	hook uint8
}

// fuzzSeeds are the golden packets of the seed corpus; they assume the
// table that setUp builds.
func fuzzSeeds() []fuzzSeed {
	c1, c2 := newCtrlConn(client1), newCtrlConn(client2)
	// Advance the connections as setUp does, so that the next segments
	// are in sequence.
	for _, c := range []*ctrlConn{c1, c2} {
		c.handshake()
		c.out(pptpMsg(mSCCRQ, 0x0100))
		c.in(pptpMsg(mSCCRP, 0x0100, 0x0100))
		c.out(pptpMsg(mOCRQ, 0, 1))
	}
	c1.in(ocrp(pacID1, 0, 1))
	c2.in(ocrp(pacID2, 1, 1))
	greV0 := grePkt(netip.MustParseAddr("203.0.113.9"), public, append([]byte{0, 0, 0x08, 0},
		serialize(ip4(netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("10.9.9.8"), layers.IPProtocolICMPv4))...))
	return []fuzzSeed{
		{"gre-in", grePkt(pac.Addr(), public, greHdr(1, 7, pppFrame)), uint8(nat.HookGREIn)},
		{"gre-in-ack-only", grePkt(pac.Addr(), public, []byte{0x20, 0x81, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 5}), uint8(nat.HookGREIn)},
		{"gre-in-local-accept", grePkt(pac.Addr(), public, greHdr(0x777, 7, pppFrame)), uint8(nat.HookGREIn) | 4},
		{"gre-out", grePkt(client2.Addr(), pac.Addr(), greHdr(pacID2, 7, pppFrame)), uint8(nat.HookGREOut)},
		{"gre-local-out", grePkt(public, pac.Addr(), greHdr(pacID2, 7, pppFrame)), uint8(nat.HookLocalOut)},
		{"gre-v0", greV0, uint8(nat.HookGREIn)},
		{"ocrq", c1.out(pptpMsg(mOCRQ, 0, 2)), uint8(nat.HookControl)},
		{"sli-in", c2.in(pptpMsg(mSLI, 1)), uint8(nat.HookControl)},
		{"ccrq-echo", c2.out(append(pptpMsg(mCCRQ, 0), pptpMsg(mEchoQ, 0, 3)...)), uint8(nat.HookControl)},
		{"cdn", c2.in(pptpMsg(mCDN, pacID2, 0x0100)), uint8(nat.HookControl)},
		{"syn", newCtrlConn(netip.MustParseAddrPort("192.168.1.77:5555")).handshake()[0], uint8(nat.HookControl)},
		{"split-call-id", c1.out(pptpMsg(mCCRQ, 0)[:13]), uint8(nat.HookControl)},
		{"truncated", grePkt(pac.Addr(), public, greHdr(1, 7, pppFrame))[:26], uint8(nat.HookGREIn)},
	}
}

// FuzzProcess sends whole packets through a worker whose table holds two
// calls, at every hook: it must never panic, keep the packet's length,
// leave an accepted packet untouched, and an accepted-modified packet
// must still have a valid IPv4 header checksum (and TCP checksum, when the
// input's was valid).
func FuzzProcess(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.pkt, s.hook)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, hook uint8) {
		_, w := newEngine(fakeResolver{}, nat.Config{LocalGREAccept: hook&4 != 0}, conntrack.Limits{})
		setUp(w)
		// Give a parseable IPv4 header a valid checksum, so that the
		// fuzzer explores past it; checksums are the property under test.
		if len(pkt) >= 20 && pkt[0]>>4 == 4 && ihl(pkt) >= 20 && ihl(pkt) <= len(pkt) {
			pkt = append([]byte(nil), pkt...)
			setIPv4Checksum(pkt)
		}
		for i := 0; i < 4; i++ {
			h := nat.Hook((int(hook) + i) % 4)
			p := append([]byte(nil), pkt...)
			ipOK := len(p) >= 20 && p[0]>>4 == 4 && ihl(p) >= 20 && ihl(p) <= len(p) && ipv4ChecksumOK(p)
			tcpOK := ipOK && p[9] == 6 &&
				int(binary.BigEndian.Uint16(p[2:])) == len(p) && len(p)-ihl(p) >= 20 && tcpChecksumOK(p)
			v, r := w.Process(p, h, 100)
			if r.String() == "invalid" || v.String() == "invalid" {
				t.Fatalf("hook %d: verdict %v reason %v", h, v, r)
			}
			if len(p) != len(pkt) {
				t.Fatalf("hook %d: length changed", h)
			}
			switch v {
			case nat.Accept:
				if !bytes.Equal(p, pkt) {
					t.Fatalf("hook %d: accepted unchanged (%v) but rewritten:\n got %x\nwant %x", h, r, p, pkt)
				}
			case nat.AcceptModified:
				if ipOK && !ipv4ChecksumOK(p) {
					t.Fatalf("hook %d (%v): IPv4 checksum no longer valid", h, r)
				}
				if tcpOK && !tcpChecksumOK(p) {
					t.Fatalf("hook %d (%v): TCP checksum no longer valid", h, r)
				}
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzProcess from the
// golden packets when PPTPGW_WRITE_FUZZ_CORPUS=1, and otherwise checks
// that the committed corpus is present and up to date.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzProcess")
	write := os.Getenv("PPTPGW_WRITE_FUZZ_CORPUS") == "1"
	for _, s := range fuzzSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s.pkt, rune(s.hook))
		path := filepath.Join(dir, "golden-"+s.name)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != body {
			t.Errorf("%s missing or stale (err %v): run PPTPGW_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus ./nat", path, err)
		}
	}
}
