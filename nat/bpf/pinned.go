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
	for _, m := range []struct {
		name           string
		packets, bytes *uint64
		calls          *int
	}{{MapInName, &t.PacketsIn, &t.BytesIn, &t.Calls}, {MapOutName, &t.PacketsOut, &t.BytesOut, nil}} {
		path := filepath.Join(pinDir, m.name)
		if _, err := os.Stat(path); err != nil {
			return PinnedTotals{}, fmt.Errorf("bpf: %w", err)
		}
		mp, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return PinnedTotals{}, fmt.Errorf("bpf: open pinned map %s: %w", path, err)
		}
		var k key
		var cpus []value
		it := mp.Iterate()
		for it.Next(&k, &cpus) {
			p, b, _ := sum(cpus)
			*m.packets += p
			*m.bytes += b
			if m.calls != nil {
				*m.calls++
			}
		}
		err = it.Err()
		mp.Close()
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return PinnedTotals{}, fmt.Errorf("bpf: read pinned map %s: %w", path, err)
		}
	}
	return t, nil
}
