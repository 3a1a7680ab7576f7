package gateway

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStateFile is one write of the state file as the writer does it
// (the table's snapshot under its read lock, then encoding, write, fsync
// and rename) at 1 000 and 10 000 calls, each on a control connection of
// its own, set up through the handler as make bench-scale does. The
// metrics split it per call: snap-ns/call under the lock, write-ns/call
// after it (fsync's wait included), cpu-ns/call the process's CPU time
// (user and system, the garbage collector's included).
func BenchmarkStateFile(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			h := newHeapGateway(b, 2*n+100)
			for h.calls < n {
				h.addCall()
			}
			h.settle()
			h.g.snapshot() // the writer's buffers, as between two writes
			b.ReportAllocs()
			var snap, write int64
			cpu0 := processCPU(b)
			for b.Loop() {
				h.g.snapshot()
				snap += h.g.state.snapNanos.Load()
				write += h.g.state.writeNanos.Load()
			}
			cpu := processCPU(b) - cpu0
			if s := h.g.Stats(); s["state_write_errors"] != 0 {
				b.Fatalf("%d write errors", s["state_write_errors"])
			}
			calls := float64(b.N) * float64(n)
			b.ReportMetric(float64(snap)/calls, "snap-ns/call")
			b.ReportMetric(float64(write)/calls, "write-ns/call")
			b.ReportMetric(float64(cpu)/calls, "cpu-ns/call")
		})
	}
}

// processCPU is the CPU time the process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
