package main

import (
	"encoding/binary"
	"net"
	"reflect"
	"testing"
)

func TestCallIDs(t *testing.T) {
	ids, err := callIDs(65534, 3, "")
	if err != nil || !reflect.DeepEqual(ids, []uint16{65534, 65535, 0}) {
		t.Errorf("range: %v %v", ids, err)
	}
	ids, err = parseCallIDs(" 5\n40001 7\t")
	if err != nil || !reflect.DeepEqual(ids, []uint16{5, 40001, 7}) {
		t.Errorf("list: %v %v", ids, err)
	}
	for _, bad := range []string{"", "70000", "x"} {
		if _, err := parseCallIDs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := callIDs(1, 0, ""); err == nil {
		t.Error("--call-ids 0: no error")
	}
}

// The frame is what the gateway expects of PPTP's GRE: a valid IPv4 header
// checksum, GRE v1 with K and S, the Call ID in the key, PPP after it.
func TestBuildFrame(t *testing.T) {
	src, dst := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	f := buildFrame(src, dst, [4]byte{198, 51, 100, 2}, [4]byte{198, 51, 100, 1}, 40001, 64)
	if len(f) != 14+64 {
		t.Fatalf("frame length %d", len(f))
	}
	ip := f[14:]
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	if sum != 0xffff {
		t.Errorf("IPv4 checksum does not verify: %#x", sum)
	}
	gre := ip[20:]
	if gre[0] != 0x30 || gre[1] != 1 || binary.BigEndian.Uint16(gre[2:]) != 0x880b || binary.BigEndian.Uint16(gre[6:]) != 40001 {
		t.Errorf("GRE header % x", gre[:12])
	}
}
