package conntrack_test

import (
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// mapBackend is a kernel in memory for the benchmark: the mappings it
// holds.
type mapBackend map[conntrack.GREMap]conntrack.GREMap

func (b mapBackend) Name() string { return "mem" }
func (b mapBackend) Replace(maps []conntrack.GREMap) error {
	clear(b)
	for _, m := range maps {
		b[mapKey(m)] = m
	}
	return nil
}
func (b mapBackend) Apply(add, del []conntrack.GREMap) error {
	for _, m := range del {
		delete(b, mapKey(m))
	}
	for _, m := range add {
		b[mapKey(m)] = m
	}
	return nil
}
func (b mapBackend) Counters(func(fastpath.InKey, fastpath.Counters), func(fastpath.OutKey, fastpath.Counters)) error {
	return nil
}
func (b mapBackend) Close(bool) error { return nil }

// wholeSource is the table without its change log: every converge reads
// the desired state whole (the converge before the log).
type wholeSource struct{ tbl *conntrack.Table }

func (s wholeSource) Desired(dst []conntrack.GREMap) ([]conntrack.GREMap, uint64) {
	return s.tbl.Desired(dst)
}
func (s wholeSource) DesiredChanged() <-chan struct{} { return s.tbl.DesiredChanged() }
func (s wholeSource) Generation() uint64              { return s.tbl.Generation() }
func (s wholeSource) FastPathCounters(m conntrack.GREMap, in bool, packets, bytes uint64, last time.Time) {
	s.tbl.FastPathCounters(m, in, packets, bytes, last)
}

// BenchmarkConverge10k: a fast path tier's converge after one call set
// up and one torn down (other Call IDs: a mapping leaves, another
// enters), at 10 000 calls each on its own control connection
// (as make bench-scale sets them up): through the change log, and with
// the desired state read whole.
func BenchmarkConverge10k(b *testing.B) {
	for _, log := range []bool{true, false} {
		name := "whole"
		if log {
			name = "log"
		}
		b.Run(name, func(b *testing.B) {
			const n = 10000
			tbl := newTable(conntrack.Limits{MaxCalls: 2 * n})
			res := &fakeResolver{}
			flows, peerIDs := make([]*flow, n), make([]uint16, n)
			for i := range flows {
				f := pnsFlow(b, tbl, res, clientAddr(i), 40000, pac1)
				f.noCheck = true
				f.start()
				f.pnsCall(0, uint16(i))
				flows[i], peerIDs[i] = f, uint16(i)
			}
			var src fastpath.Source = tbl
			if !log {
				src = wholeSource{tbl}
			}
			be := mapBackend{}
			r := fastpath.New(src, be, fastpath.Config{FullEvery: -1})
			if err := r.Start(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				f, old := flows[i%n], peerIDs[i%n]
				peerIDs[i%n] ^= 0x8000
				f.pnsCall(peerIDs[i%n]>>15, peerIDs[i%n]) // another outer Call ID: the one freed last time
				f.send(dirIn, cdn(old))
				b.StartTimer()
				r.Converge()
			}
			b.StopTimer()
			desired, _ := tbl.Desired(nil)
			for _, m := range desired {
				if be[mapKey(m)] != m {
					b.Fatalf("the kernel holds %+v for %+v", be[mapKey(m)], m)
				}
			}
			if len(be) != n || r.Stats().Mappings != n || len(desired) != n {
				b.Fatalf("the kernel holds %d, the reconciler %d, want %d", len(be), r.Stats().Mappings, n)
			}
		})
	}
}
