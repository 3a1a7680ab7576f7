//go:build e2e

package bpf

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// TestMutatedFrames: thousands of inbound frames with one to three random
// header bytes changed. The program must either pass a frame byte for
// byte unchanged or translate it exactly as a Go model of the rules says
// (every field but the checksum compared; the checksum valid exactly
// when it was valid before).
func TestMutatedFrames(t *testing.T) {
	b, ns, ifOut, _ := goldenBackend(t)
	nstest.Sh(t, "ip", "-n", ns, "link", "set", "bpfgi", "mtu", "1000")
	base := frame{dst: macGwOut, src: macRouter, ttl: 3, saddr: "203.0.113.5", daddr: "198.51.100.1", callID: 40001, payload: 8}.bytes()
	rng := rand.New(rand.NewPCG(1, 2))
	var hits, passes int
	for i := range 3000 {
		in := bytes.Clone(base)
		for range 1 + rng.IntN(3) {
			in[rng.IntN(offCallID+2)] = byte(rng.Uint32())
		}
		want, redirect := model(in)
		ret, out := run(t, b.Program(), ns, ifOut, in)
		if !redirect {
			passes++
			if ret != verdictPassU || !bytes.Equal(out, in) {
				t.Fatalf("frame %d: verdict %d, want it passed unchanged\n in  %s\n out %s", i, int32(ret), hex.EncodeToString(in), hex.EncodeToString(out))
			}
			continue
		}
		hits++
		csumOK := ipCsum(in[offIP:offGRE]) == 0
		if ret != verdictRedirect || ipCsum(out[offIP:offGRE]) == 0 != csumOK {
			t.Fatalf("frame %d: verdict %d, checksum valid %v (in: %v)\n in  %s\n out %s", i, int32(ret),
				ipCsum(out[offIP:offGRE]) == 0, csumOK, hex.EncodeToString(in), hex.EncodeToString(out))
		}
		out[offCsum], out[offCsum+1], want[offCsum], want[offCsum+1] = 0, 0, 0, 0
		if !bytes.Equal(out, want) {
			t.Fatalf("frame %d:\n in   %s\n out  %s\n want %s", i, hex.EncodeToString(in), hex.EncodeToString(out), hex.EncodeToString(want))
		}
	}
	t.Logf("%d frames translated, %d passed", hits, passes)
	if hits < 100 || passes < 100 {
		t.Fatalf("the mutations exercised too little: %d hits, %d passes", hits, passes)
	}
}

// model is what the program must do with an inbound frame on the golden
// namespace's outside interface: the translated frame, or false.
func model(in []byte) ([]byte, bool) {
	be := binary.BigEndian
	totLen := int(be.Uint16(in[offTotLen:]))
	switch {
	case !bytes.Equal(in[0:6], macGwOut), // PACKET_HOST only
		be.Uint16(in[offEtherType:]) != 0x0800, in[offIP] != 0x45, be.Uint16(in[offFrag:])&0x3fff != 0,
		in[offProto] != 47, be.Uint32(in[offGRE:])&GREMask != GREValue, in[offTTL] <= 1,
		totLen < minFrame-offIP, totLen+offIP > len(in):
		return nil, false
	}
	m := goldenMaps[0]
	if !bytes.Equal(in[offSaddr:offSaddr+4], m.Peer[:]) || !bytes.Equal(in[offDaddr:offDaddr+4], m.Public[:]) ||
		be.Uint16(in[offCallID:]) != m.OuterID {
		return nil, false
	}
	if totLen > 1000 { // the inside MTU
		return nil, false
	}
	out := bytes.Clone(in)
	copy(out[0:6], macInside)
	copy(out[6:12], macGwIn)
	out[offTTL]--
	copy(out[offDaddr:], m.Inside[:])
	be.PutUint16(out[offCallID:], m.InsideID)
	return out, true
}
