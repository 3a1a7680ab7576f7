package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/nfq/nfqtest"
)

// memState is a StateStore in memory that records every write.
type memState struct {
	mu     sync.Mutex
	writes []time.Time
	conns  []int // len(Conns) of each write
	read   *conntrack.Snapshot
}

func (m *memState) Read(s *conntrack.Snapshot) (bool, error) {
	if m.read == nil {
		return false, nil
	}
	*s = *m.read
	return true, nil
}

func (m *memState) Write(s conntrack.Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes = append(m.writes, time.Now())
	m.conns = append(m.conns, len(s.Conns))
	return nil
}

func (m *memState) get() ([]time.Time, []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.writes...), append([]int(nil), m.conns...)
}

// insideResolver says 10/8 is inside, translated to 203.0.113.1.
type insideResolver struct{}

func (insideResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if src.Addr[0] != 10 {
		src, dst = dst, src
	}
	return conntrack.ConnSpec{Inside: src, Outside: dst, Public: conntrack.Endpoint{Addr: conntrack.Addr{203, 0, 113, 1}, Port: src.Port}}, true
}

func stateGateway(t *testing.T, st *memState, gap time.Duration) *Gateway {
	t.Helper()
	deps := Deps{
		Resolver: insideResolver{},
		State:    st,
		OpenQueues: func(ctx context.Context, c nfq.Config, h nfq.Handler) (Queues, error) {
			return nfqtest.Open(ctx, c, h)
		},
		Backends:   map[string]func() (fastpath.Backend, error){},
		QueueDrops: func(first, last uint16) uint64 { return 0 },
	}
	g, err := New(Config{GREPath: PathQueue, SnapshotInterval: time.Hour, StateWriteGap: gap}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return g
}

// syn opens a control connection from inside port p (one state change).
func syn(g *Gateway, p uint16) {
	seg := &conntrack.Segment{Src: conntrack.Endpoint{Addr: conntrack.Addr{10, 0, 0, 1}, Port: p},
		Dst: conntrack.Endpoint{Addr: conntrack.Addr{198, 51, 100, 10}, Port: 1723}, Seq: 1000, SYN: true}
	g.Table().Control(seg, time.Now().UnixNano(), insideResolver{})
}

// TestStateWrittenOnChange: a change of the table reaches the state file
// within the write gap, without waiting for the periodic snapshot; a burst
// of changes costs one or two writes, the last holding all of them; no
// change, no write.
func TestStateWrittenOnChange(t *testing.T) {
	const gap = 200 * time.Millisecond
	st := &memState{}
	g := stateGateway(t, st, gap)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitWrites := func(n int, within time.Duration) ([]time.Time, []int) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			w, c := st.get()
			if len(w) >= n || time.Now().After(deadline) {
				return w, c
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	start := time.Now()
	syn(g, 40000)
	w, c := waitWrites(1, time.Second)
	if len(w) != 1 || c[0] != 1 {
		t.Fatalf("after one change: writes %v conns %v, want one write of 1 connection", w, c)
	}
	if d := w[0].Sub(start); d > 100*time.Millisecond {
		t.Errorf("first change written after %v: the gap since the last write had passed, want at once", d)
	}
	burst := time.Now()
	for p := range uint16(50) {
		syn(g, 40001+p)
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(2 * gap)
	w, c = st.get()
	if n := len(w) - 1; n < 1 || n > 2 {
		t.Errorf("a burst of 50 changes over %v: %d writes, want 1 or 2", time.Since(burst)-2*gap, n)
	}
	if last := c[len(c)-1]; last != 51 {
		t.Errorf("last write holds %d connections, want 51", last)
	}
	for i := 1; i < len(w); i++ {
		if d := w[i].Sub(w[i-1]); d < gap-10*time.Millisecond {
			t.Errorf("writes %d and %d %v apart, want at least %v", i-1, i, d, gap)
		}
	}
	n := len(w)
	time.Sleep(2 * gap)
	if w, _ := st.get(); len(w) != n {
		t.Errorf("%d writes without a change", len(w)-n)
	}
	if s := g.Stats(); s["state_writes"] != uint64(n) {
		t.Errorf("state_writes %d, want %d", s["state_writes"], n)
	}
}

// BenchmarkStateWrite10k: encoding and writing (fsync, rename) the state
// file of 10 000 calls, each on its own control connection, off the
// table's lock on the writer's goroutine.
func BenchmarkStateWrite10k(b *testing.B) {
	snap := conntrack.Snapshot{Version: conntrack.SnapshotVersion}
	for i := range 10000 {
		in := fmt.Sprintf("10.1.%d.%d", i>>8, i&255)
		snap.Conns = append(snap.Conns, conntrack.ConnSnap{Inside: in + ":40000", Outside: "198.51.100.10:1723",
			Public: "203.0.113.1:40000", Role: conntrack.RolePNSInside, LastSeen: 1, Cur: -1, Resv: [2]int16{-1, -1},
			Calls: []conntrack.CallSnap{{Role: conntrack.RolePNSInside, State: conntrack.StateEstablished, Inside: in,
				HasInside: true, Public: "203.0.113.1", OuterID: uint16(i), Peer: "198.51.100.10", PeerID: uint16(i),
				HasPeer: true, Created: 1, Since: 1, LastSeen: 1, PktsIn: 1000, PktsOut: 1000, BytesIn: 1e6, BytesOut: 1e6}}})
	}
	f := StateFile(filepath.Join(b.TempDir(), "state.json"))
	for b.Loop() {
		if err := f.Write(snap); err != nil {
			b.Fatal(err)
		}
	}
}

// The writer's own encoding of a StateFile (StateBuf, streamed) is the
// file encoding/json would write: read back, the same table; encoded
// again by encoding/json, the same bytes.
func TestStateFileStream(t *testing.T) {
	h := newHeapGateway(t, 100)
	for h.calls < 20 {
		h.addCall()
	}
	h.settle() // the writer's own writes of the set-ups are done
	h.g.snapshot()
	if s := h.g.Stats(); s["state_write_errors"] != 0 {
		t.Fatalf("%d write errors", s["state_write_errors"])
	}
	path := string(h.g.deps.State.(StateFile))
	var snap conntrack.Snapshot
	if found, err := h.g.deps.State.Read(&snap); !found || err != nil {
		t.Fatalf("Read: %v %v", found, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(want)+"\n" {
		t.Errorf("file\n%s\nencoding/json\n%s", data, want)
	}
	sortConns := func(s conntrack.Snapshot) []conntrack.ConnSnap {
		return slices.SortedFunc(slices.Values(s.Conns), func(a, b conntrack.ConnSnap) int { return strings.Compare(a.Inside, b.Inside) })
	}
	if diff := cmp.Diff(sortConns(h.g.table.Snapshot()), sortConns(snap), cmpopts.EquateEmpty()); diff != "" || len(snap.Conns) != 20 {
		t.Errorf("%d connections read back (-table +file):\n%s", len(snap.Conns), diff)
	}
}
