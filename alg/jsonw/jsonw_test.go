package jsonw

import (
	"encoding/json"
	"math"
	"net/netip"
	"testing"
)

func marshal(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every width of number, both signs and the extremes, as encoding/json.
func TestNumbers(t *testing.T) {
	for _, v := range []uint64{0, 9, 10, 99, 100, 999, 1000, 9999, 10000, 99999, 100000, 1 << 32, math.MaxUint64} {
		if got := string(Uint([]byte("x"), v)); got[1:] != marshal(t, v) {
			t.Errorf("Uint(%d) = %s", v, got[1:])
		}
		for _, i := range []int64{int64(v), -int64(v)} {
			if got := string(Int(nil, i)); got != marshal(t, i) {
				t.Errorf("Int(%d) = %s", i, got)
			}
		}
	}
	if got := string(Int(nil, math.MinInt64)); got != marshal(t, int64(math.MinInt64)) {
		t.Errorf("Int(MinInt64) = %s", got)
	}
	if string(Bool(nil, true)) != "true" || string(Bool(nil, false)) != "false" {
		t.Error("Bool")
	}
}

func FuzzNumbers(f *testing.F) {
	f.Add(uint64(12345), [4]byte{192, 168, 0, 1}[0])
	f.Fuzz(func(t *testing.T, v uint64, o byte) {
		if got := string(Uint(nil, v)); got != marshal(t, v) {
			t.Fatalf("Uint(%d) = %s", v, got)
		}
		if got := string(Int(nil, int64(v))); got != marshal(t, int64(v)) {
			t.Fatalf("Int(%d) = %s", int64(v), got)
		}
		a := [4]byte{o, byte(v), byte(v >> 8), byte(v >> 16)}
		if got := string(IPv4(nil, a)); got != netip.AddrFrom4(a).String() {
			t.Fatalf("IPv4(%v) = %s", a, got)
		}
	})
}

func FuzzString(f *testing.F) {
	for _, s := range []string{"", "node-1", "<&>", "\"\\", "\x00\x1f\x7f", "é\u2028\u2029", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := string(String(nil, s)); got != marshal(t, s) {
			t.Fatalf("String(%q) = %s, want %s", s, got, marshal(t, s))
		}
	})
}
