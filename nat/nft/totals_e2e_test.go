//go:build e2e

package nft

import (
	"errors"
	"os"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// TestReadTotals: without the table ReadTotals says os.ErrNotExist; with
// it, it counts the calls mapped (read-only, beside the backend).
func TestReadTotals(t *testing.T) {
	nstest.NeedRoot(t)
	ns := nstest.NewNS(t, "nfttot")
	fd := nstest.FD(t, ns)
	if _, err := ReadTotals(Config{NetNS: fd}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no table: %v", err)
	}
	b, err := New(Config{MarkBit: 0x10000000, NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(true)
	calls := []conntrack.GREMap{
		{Peer: addr("203.0.113.5"), OuterID: 1, Public: addr("198.51.100.1"), Inside: addr("192.168.1.10"), InsideID: 5, PeerID: 9},
		{Peer: addr("203.0.113.5"), OuterID: 2, Public: addr("198.51.100.1"), Inside: addr("192.168.1.11"), InsideID: 5, PeerID: 10},
	}
	if err := b.Replace(calls); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTotals(Config{NetNS: fd})
	if err != nil || got != (Totals{Calls: 2}) {
		t.Errorf("ReadTotals %+v, %v; want 2 calls, no packets yet", got, err)
	}
}
