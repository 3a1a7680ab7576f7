package conntrack

import (
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/pptpgw/pptpgw/alg"
)

// TestSizes keeps a call's and a connection's bytes from growing unnoticed:
// they are most of the daemon's heap per call (make bench-scale's heap
// line). Each limit is a size class of Go's allocator.
func TestSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"Call", unsafe.Sizeof(Call{}), 96},
		{"Conn", unsafe.Sizeof(Conn{}), 112},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, want at most %d", c.name, c.size, c.max)
		}
	}
}

// A state change's time is an offset from created in 32 bits: to the
// microsecond (rounded down) for 2^31 µs, in whole seconds (rounded up,
// so a tombstone never ends early) after, to 68 years; before created is
// created.
func TestSinceOffset(t *testing.T) {
	const us, s = int64(time.Microsecond), int64(time.Second)
	lastUS := int64(1<<31-1) * us
	for _, c := range []struct{ d, want int64 }{
		{-5 * s, 0},
		{0, 0},
		{999, 0},
		{1500, us},
		{int64(250 * time.Millisecond), int64(250 * time.Millisecond)},
		{int64(35 * time.Minute), int64(35 * time.Minute)},
		{lastUS + 999, lastUS},
		{lastUS + us, 2148 * s},
		{int64(2*time.Hour) + 1, 7201 * s},
		{int64(2 * time.Hour), 7200 * s},
		{100 * 365 * 24 * 3600 * s, (1<<31 - 1) * s},
		{math.MaxInt64, (1<<31 - 1) * s},
	} {
		if got := makeSinceOffset(c.d).ns(); got != c.want {
			t.Errorf("offset %d: %d, want %d", c.d, got, c.want)
		}
	}
}

// packMPPE keeps every bit RFC 3078 defines.
func TestPackMPPE(t *testing.T) {
	for _, m := range []alg.MPPE{0, alg.MPPC, alg.MPPE40, alg.MPPE56, alg.MPPE128 | alg.MPPEStateless,
		alg.MPPE40 | alg.MPPE56 | alg.MPPE128 | alg.MPPEStateless | alg.MPPC | 0x10} {
		var p pppState
		p.setWatch(true)
		p.setAuth(alg.AuthMSCHAPv2, false)
		for range maxPeek {
			p.peeked()
		}
		p.setMPPE(m, pppMPPESeen)
		if got, seen := p.mppe(); got != m || !seen || p.auth() != alg.AuthMSCHAPv2 || !p.watching() ||
			p.peeked() != maxPeek+1 {
			t.Errorf("MPPE %#x: got %#x %v, auth %v, watching %v", m, got, seen, p.auth(), p.watching())
		}
	}
	if got := unpackMPPE(packMPPE(0xfefeff00 | alg.MPPE128)); got != alg.MPPE128 {
		t.Errorf("reserved bits kept: %#x", got)
	}
}
