//go:build e2e

package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// TestReadPinned: beside a live backend, the pinned maps read read-only
// give its calls and counters; an empty pin
// directory is os.ErrNotExist.
func TestReadPinned(t *testing.T) {
	nstest.NeedRoot(t)
	dir := pinDir(t, "events-pinned")
	if _, err := ReadPinned(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("nothing pinned: %v", err)
	}
	b := openT(t, Config{PinDir: dir, MaxCalls: 8})
	calls := manyCalls(2)
	if err := b.Replace(calls); err != nil {
		t.Fatal(err)
	}
	setCounters(t, b, inKey(calls[0]), 4)
	setCounters(t, b, outKey(calls[1]), 6)
	got, err := ReadPinned(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := PinnedTotals{Calls: 2, PacketsIn: 4, PacketsOut: 6, SinceRead: swapCounters}
	if got != want {
		t.Errorf("ReadPinned %+v, want %+v", got, want)
	}
}
