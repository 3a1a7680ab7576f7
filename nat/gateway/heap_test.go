package gateway

import (
	"context"
	"encoding/binary"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/nfq/nfqtest"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// nullBackend is a fast path that keeps nothing in Go memory, as the
// kernel ones (the nf_tables and bpf maps live in the kernel). With
// calls, it reports a packet each way for each of them, as the bpf tier
// does once bench-scale's warm-up went through it (the nf_tables tier
// behind it counts nothing): the bpf tier as deltas, a packet at each
// read, as the bpf backend reports them, so that the reconciler keeps
// what it keeps for the real one.
type nullBackend struct {
	name   string
	calls  func() []conntrack.CallInfo
	deltas bool
}

func (b nullBackend) CountersAreDeltas() bool { return b.deltas }

func (b nullBackend) Name() string                          { return b.name }
func (nullBackend) Replace([]conntrack.GREMap) error        { return nil }
func (nullBackend) Apply(add, del []conntrack.GREMap) error { return nil }
func (nullBackend) Close(bool) error                        { return nil }
func (nullBackend) SetInterfaces([]int) error               { return nil }
func (nullBackend) Interfaces() []int                       { return nil }

// Counters reports one key each way, of no call: the reconciler builds
// its lookups by key as with a kernel's counters; with calls, theirs.
func (b nullBackend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	in(fastpath.InKey{}, fastpath.Counters{})
	out(fastpath.OutKey{}, fastpath.Counters{})
	if b.calls == nil {
		return nil
	}
	one := fastpath.Counters{Packets: 1, Bytes: 64}
	for _, c := range b.calls() {
		in(fastpath.InKey{Peer: c.Peer, Public: c.Public, OuterID: c.OuterID}, one)
		out(fastpath.OutKey{Inside: c.Inside, Peer: c.Peer, PeerID: c.PeerID}, one)
	}
	return nil
}

// heapGateway is a gateway as the daemon runs it with --gre-path bpf (two
// fast-path tiers, a state file, a call log), over in-memory queues.
type heapGateway struct {
	tb    testing.TB
	g     *Gateway
	ctl   *nfqtest.Queues
	calls int
}

func newHeapGateway(tb testing.TB, maxCalls int) *heapGateway {
	state := StateFile(filepath.Join(tb.TempDir(), "state.json"))
	cfg := Config{GREPath: PathBPF, Rules: rules.Config{Queue: 10, Queues: 1}, Observer: conntrack.NopObserver{},
		Limits: conntrack.Limits{MaxCalls: maxCalls, MaxCallsPerInside: maxCalls}}
	var g *Gateway // the bpf backend's calls, once started
	g, qs, err := testGatewayDeps(tb, cfg, nil, func(d *Deps) {
		d.Resolver = masquerade{}
		d.State = state
		d.Backends[PathKernel] = func() (fastpath.Backend, error) { return nullBackend{name: PathKernel}, nil }
		d.Backends[PathBPF] = func() (fastpath.Backend, error) {
			return nullBackend{name: PathBPF, calls: func() []conntrack.CallInfo { return g.Calls() }, deltas: true}, nil
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	// Run stops the gateway itself once its goroutines are done: the
	// cleanup waits for that, as the daemon does, instead of racing them.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	return &heapGateway{tb: tb, g: g, ctl: qs[0]}
}

// addCall sets up one call on a control connection of its own, as
// e2e/cmd/pptpload does: SYN-ACK, SCCRQ, SCCRP, OCRQ, OCRP.
func (h *heapGateway) addCall() {
	i := h.calls
	h.calls++
	client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, byte(i / 250 % 250), byte(1 + i%250)}), uint16(20000+i/62500))
	fwd := nfq.Meta{Hook: nfq.HookForward, HasInDev: true, InDev: 3, OutDev: 5}
	sccrq, sccrp := pptpmsg.NewSCCRQ("c"), pptpmsg.NewSCCRP("s")
	ocrq := pptpmsg.NewOCRQ(1, 1)
	c, s := uint32(1001), uint32(5001)
	h.send(segment(pktPAC, client, s-1, c, true, nil), fwd)
	h.send(segment(client, pktPAC, c, s, false, sccrq), fwd)
	c += uint32(len(sccrq))
	h.send(segment(pktPAC, client, s, c, false, sccrp), fwd)
	s += uint32(len(sccrp))
	r := h.send(segment(client, pktPAC, c, s, false, ocrq), fwd)
	c += uint32(len(ocrq))
	outer := binary.BigEndian.Uint16(r.Packet[40+12:]) // the OCRQ's Call ID as the gateway rewrote it
	ocrp := pptpmsg.NewOCRP(uint16(0x100+i), outer, 1)
	h.send(segment(pktPAC, client, s, c, false, ocrp), fwd)
	s += uint32(len(ocrp))
	h.send(segment(client, pktPAC, c, s, false, nil), fwd) // the ACK of the reply
}

func (h *heapGateway) send(pkt []byte, meta nfq.Meta) nfqtest.Result {
	r, err := h.ctl.Handle(10, pkt, 0, meta)
	if err != nil {
		h.tb.Fatal(err)
	}
	return r
}

// settle waits until both fast-path tiers hold every call and the state
// file was written since, then returns the live heap after a GC.
func (h *heapGateway) settle() uint64 {
	deadline := time.Now().Add(30 * time.Second)
	var base uint64 // the packets counted once the tiers held every call
	for {
		s := h.g.Stats()
		held := s["calls_active"] == uint64(h.calls) && s["gre_bpf_calls"] == uint64(h.calls) && s["gre_kernel_calls"] == uint64(h.calls)
		if held {
			if base == 0 {
				base = min(s["gre_bpf_in"], s["gre_bpf_out"]) + 1
			}
			// Two reads of every call since: one at least whole.
			if min(s["gre_bpf_in"], s["gre_bpf_out"])+1 >= base+2*uint64(h.calls) {
				break
			}
		}
		if time.Now().After(deadline) {
			h.tb.Fatalf("calls_active %d, bpf %d (packets %d, %d), kernel %d: want %d", s["calls_active"], s["gre_bpf_calls"],
				s["gre_bpf_in"], s["gre_bpf_out"], s["gre_kernel_calls"], h.calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The least of five readings, as bench-scale: a state file write in
	// progress holds its encoding buffers.
	least := uint64(math.MaxUint64)
	for range 5 {
		time.Sleep(DefaultStateWriteGap)
		least = min(least, liveHeap())
	}
	return least
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// writeHeapProfile writes the heap profile as of now, 10 000 calls up, to
// $PPTPGW_HEAP_PROFILE when set (-memprofile is written after the gateway
// is gone). Run with -memprofilerate 1 for every allocation.
func writeHeapProfile(tb testing.TB) {
	path := os.Getenv("PPTPGW_HEAP_PROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkHeapPerCall is make bench-scale's daemon heap per call in
// process: a gateway running the bpf and nft tiers (backends holding
// nothing), the live heap at 10 000 calls minus at 10, per call, each call
// on a control connection of its own. Profile it with -memprofile and
// pprof -sample_index=inuse_space.
func BenchmarkHeapPerCall(b *testing.B) {
	const small, large = 10, 10000
	for range b.N {
		h := newHeapGateway(b, 2*large+100)
		for h.calls < small {
			h.addCall()
		}
		before := h.settle()
		for h.calls < large {
			h.addCall()
		}
		after := h.settle()
		writeHeapProfile(b)
		b.ReportMetric((float64(after)-float64(before))/(large-small), "B/call")
		runtime.KeepAlive(h)
	}
}
