package bpf

import (
	"encoding/binary"
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
	// SinceRead: the lines' counters are what the program counted since
	// the daemon last read them (it swaps them to zero, every second
	// while it runs), not since the calls began; the spill's few are.
	SinceRead bool
}

// ReadPinned reads the maps pinned under pinDir read-only, beside a
// running daemon (`pptpgw check`); an error that errors.Is
// os.ErrNotExist means nothing is pinned there. Packet counts are the
// kernel's 32-bit counters, without the wraps only the daemon knows.
func ReadPinned(pinDir string) (PinnedTotals, error) {
	t := PinnedTotals{SinceRead: swapCounters}
	add := func(v value) {
		if v.Dir == dirIn {
			t.Calls++
			t.PacketsIn += uint64(v.Packets)
			t.BytesIn += v.Byts
		} else {
			t.PacketsOut += uint64(v.Packets)
			t.BytesOut += v.Byts
		}
	}
	err := readPinned(pinDir, MapLineName, func(_ []byte, line []byte) {
		for s := 0; s < lineSize; s += slotSize {
			var v value
			if _, err := binary.Decode(line[s:s+valueSize], binary.NativeEndian, &v); err == nil &&
				binary.NativeEndian.Uint32(line[s+slotKey:]) != 0 {
				add(v)
			}
		}
	})
	if err == nil {
		err = readPinned(pinDir, MapCallsName, func(_ []byte, b []byte) {
			var v value
			if _, err := binary.Decode(b, binary.NativeEndian, &v); err == nil {
				add(v)
			}
		})
	}
	if err != nil {
		return PinnedTotals{}, err
	}
	return t, nil
}

// readPinned calls fn with every entry of the map pinned as name.
func readPinned(pinDir, name string, fn func(k, v []byte)) error {
	path := filepath.Join(pinDir, name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	mp, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("bpf: open pinned map %s: %w", path, err)
	}
	defer mp.Close()
	var k, v []byte
	it := mp.Iterate()
	for it.Next(&k, &v) {
		fn(k, v)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: read pinned map %s: %w", path, err)
	}
	return nil
}
