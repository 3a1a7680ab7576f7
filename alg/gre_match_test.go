package alg

import (
	"encoding/binary"
	"testing"
)

// TestGREMatchIsParseGRE: the kernel fast paths' masked match takes a GRE
// header exactly when ParseGRE does, for every value of the flags and
// version bytes.
func TestGREMatchIsParseGRE(t *testing.T) {
	b := make([]byte, 16)
	binary.BigEndian.PutUint16(b[2:], 0x880b)
	for w := range 1 << 16 {
		binary.BigEndian.PutUint16(b, uint16(w))
		_, r := ParseGRE(b)
		match := binary.BigEndian.Uint32(b)&GREMatchMask == GREMatchValue
		if match != (r == ReasonNone) {
			t.Fatalf("%#04x: match %v, ParseGRE %v", w, match, r)
		}
	}
}
