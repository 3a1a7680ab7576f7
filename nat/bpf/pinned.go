package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// PinnedTotals are what the pinned maps of a bpf path hold: the calls
// mapped and the packets and bytes the program translated for them (the
// counters of calls since gone are not there).
type PinnedTotals struct {
	Calls                 int
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
}

// ReadPinned reads the maps pinned under pinDir read-only, beside a
// running daemon (`pptpgw check`); an error that errors.Is
// os.ErrNotExist means nothing is pinned there.
func ReadPinned(pinDir string) (PinnedTotals, error) {
	var t PinnedTotals
	path := filepath.Join(pinDir, MapCallsName)
	if _, err := os.Stat(path); err != nil {
		return PinnedTotals{}, fmt.Errorf("bpf: %w", err)
	}
	mp, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return PinnedTotals{}, fmt.Errorf("bpf: open pinned map %s: %w", path, err)
	}
	defer mp.Close()
	var k key
	var v value
	it := mp.Iterate()
	for it.Next(&k, &v) {
		if v.Dir == dirIn {
			t.Calls++
			t.PacketsIn += v.Packets
			t.BytesIn += v.Byts
		} else {
			t.PacketsOut += v.Packets
			t.BytesOut += v.Byts
		}
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return PinnedTotals{}, fmt.Errorf("bpf: read pinned map %s: %w", path, err)
	}
	return t, nil
}
