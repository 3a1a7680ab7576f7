package conntrack

import (
	"testing"
	"unsafe"
)

// TestSizes keeps a call's and a connection's bytes from growing unnoticed:
// they are most of the daemon's heap per call (make bench-scale's heap
// line). Each limit is a size class of Go's allocator.
func TestSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"Call", unsafe.Sizeof(Call{}), 104},
		{"Conn", unsafe.Sizeof(Conn{}), 128},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, want at most %d", c.name, c.size, c.max)
		}
	}
}
