package nfq

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ProcStatsPath is the kernel's per-queue table for the reader's network
// namespace. With NoENOBUFS set, overruns show up only here.
const ProcStatsPath = "/proc/net/netfilter/nfnetlink_queue"

// QueueStats is one line of ProcStatsPath.
type QueueStats struct {
	Queue        uint16 // queue_number
	PortID       uint32 // peer_portid: the netlink port of the bound socket
	Waiting      uint32 // queue_total: packets waiting for a verdict now
	CopyMode     uint8  // copy_mode (2: whole packet)
	CopyRange    uint32 // copy_range
	QueueDropped uint32 // queue_dropped: dropped because the queue was full
	UserDropped  uint32 // user_dropped: dropped because the socket buffer was full
	IDSequence   uint32 // id_sequence: the last packet id handed out
}

// ReadProcStats parses the contents of ProcStatsPath: nine whitespace-
// separated columns per bound queue, the last always 1. Counters are the
// kernel's 32-bit values and wrap.
func ReadProcStats(r io.Reader) ([]QueueStats, error) {
	var out []QueueStats
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("nfnetlink_queue line %d: %d columns, want 9", n, len(f))
		}
		var v [8]uint64
		for i := range v {
			bits := 32
			switch i {
			case 0:
				bits = 16
			case 3:
				bits = 8
			}
			x, err := strconv.ParseUint(f[i], 10, bits)
			if err != nil {
				return nil, fmt.Errorf("nfnetlink_queue line %d column %d: %w", n, i+1, err)
			}
			v[i] = x
		}
		out = append(out, QueueStats{
			Queue: uint16(v[0]), PortID: uint32(v[1]), Waiting: uint32(v[2]),
			CopyMode: uint8(v[3]), CopyRange: uint32(v[4]),
			QueueDropped: uint32(v[5]), UserDropped: uint32(v[6]), IDSequence: uint32(v[7]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read nfnetlink_queue: %w", err)
	}
	return out, nil
}
