package gateway

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/nfq/nfqtest"
	"github.com/pptpgw/pptpgw/nat/rules"
)

func TestHookOf(t *testing.T) {
	l := rules.Layout{First: 10, N: 2}
	for _, tt := range []struct {
		q    uint16
		meta nfq.Meta
		want nat.Hook
	}{
		{10, nfq.Meta{Hook: nfq.HookForward, HasInDev: true}, nat.HookControl},
		{11, nfq.Meta{Hook: nfq.HookForward, HasInDev: true}, nat.HookControl},
		{10, nfq.Meta{Hook: nfq.HookOutput}, nat.HookControlOut},
		{11, nfq.Meta{Hook: nfq.HookInput, HasInDev: true}, nat.HookControlIn},
		{12, nfq.Meta{Hook: nfq.HookPrerouting, HasInDev: true}, nat.HookGREIn},
		{13, nfq.Meta{Hook: nfq.HookPostrouting, HasInDev: true}, nat.HookGREOut},
		{13, nfq.Meta{Hook: nfq.HookPostrouting}, nat.HookLocalOut},
	} {
		if got := hookOf(l, tt.q, tt.meta); got != tt.want {
			t.Errorf("queue %d %+v: hook %v, want %v", tt.q, tt.meta, got, tt.want)
		}
	}
}

// memBackend is a fast path that holds mappings in memory, or refuses.
type memBackend struct {
	name   string
	fail   error
	held   map[fastpath.InKey]conntrack.GREMap
	closed bool
}

func (b *memBackend) Name() string { return b.name }
func (b *memBackend) Replace(maps []conntrack.GREMap) error {
	if b.fail != nil {
		return b.fail
	}
	b.held = map[fastpath.InKey]conntrack.GREMap{}
	return b.Apply(maps, nil)
}
func (b *memBackend) Apply(add, del []conntrack.GREMap) error {
	for _, m := range del {
		delete(b.held, fastpath.InKeyOf(m))
	}
	for _, m := range add {
		b.held[fastpath.InKeyOf(m)] = m
	}
	return nil
}
func (b *memBackend) Counters(func(fastpath.InKey, fastpath.Counters), func(fastpath.OutKey, fastpath.Counters)) error {
	return nil
}
func (b *memBackend) Close(bool) error { b.closed = true; return nil }

type noResolver struct{}

func (noResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	return conntrack.ConnSpec{}, false
}

// testGateway starts a gateway with in-memory queues and the given
// backends; handlers receives each queue set's handler.
func testGateway(t *testing.T, cfg Config, backends map[string]*memBackend) (*Gateway, []*nfqtest.Queues, error) {
	return testGatewayDeps(t, cfg, backends, nil)
}

// testGatewayDeps starts a gateway over in-memory queues (nat/nfq/nfqtest:
// the packet path runs as over NFQUEUE), with the given backends and deps
// changed by edit (nil: none); it returns the control queue set and the
// GRE one.
func testGatewayDeps(t testing.TB, cfg Config, backends map[string]*memBackend, edit func(*Deps)) (*Gateway, []*nfqtest.Queues, error) {
	t.Helper()
	var qs []*nfqtest.Queues
	deps := Deps{
		Resolver: noResolver{},
		OpenQueues: func(ctx context.Context, c nfq.Config, h nfq.Handler) (Queues, error) {
			q, err := nfqtest.Open(ctx, c, h)
			qs = append(qs, q)
			return q, err
		},
		Backends:   map[string]func() (fastpath.Backend, error){},
		QueueDrops: func(first, last uint16) uint64 { return 0 },
	}
	for name, b := range backends {
		deps.Backends[name] = func() (fastpath.Backend, error) { return b, nil }
	}
	if edit != nil {
		edit(&deps)
	}
	g, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return g, qs, g.Start(t.Context())
}

// TestPathChoice: auto and bpf run tc-eBPF first and nf_tables behind
// it, each where it works, and say why one does not; an explicit path
// that fails is an error; queue uses none.
func TestPathChoice(t *testing.T) {
	refused := errors.New("operation not permitted")
	for _, tt := range []struct {
		name               string
		path               string
		bpfFails, nftFails bool
		want               string
		tiers              []string
		wantErr            string
		reason             string
	}{
		{"auto takes both", PathAuto, false, false, PathBPF, []string{PathBPF, PathKernel}, "", "--gre-path auto"},
		{"auto falls back to kernel", PathAuto, true, false, PathKernel, []string{PathKernel}, "", "bpf: operation not permitted"},
		{"auto falls back to queue", PathAuto, true, true, PathQueue, nil, "", "kernel: operation not permitted"},
		{"bpf without nf_tables", PathBPF, false, true, PathBPF, []string{PathBPF}, "", "kernel: operation not permitted"},
		{"bpf refused", PathBPF, true, false, "", nil, "--gre-path bpf", ""},
		{"kernel", PathKernel, false, false, PathKernel, []string{PathKernel}, "", "--gre-path kernel"},
		{"kernel refused", PathKernel, false, true, "", nil, "--gre-path kernel", ""},
		{"queue", PathQueue, false, false, PathQueue, nil, "", "--gre-path queue"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bpf, kernel := &memBackend{name: PathBPF}, &memBackend{name: PathKernel}
			if tt.bpfFails {
				bpf.fail = refused
			}
			if tt.nftFails {
				kernel.fail = refused
			}
			g, _, err := testGateway(t, Config{GREPath: tt.path}, map[string]*memBackend{PathBPF: bpf, PathKernel: kernel})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer g.Stop()
			got := g.Path()
			if got.Path != tt.want || !slices.Equal(got.Tiers, tt.tiers) || !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("path %+v, want %s %v (%s)", got, tt.want, tt.tiers, tt.reason)
			}
			s := g.Stats()
			if s["gre_path_"+tt.want] != 1 {
				t.Errorf("stats gre_path_%s = %d", tt.want, s["gre_path_"+tt.want])
			}
			for _, tier := range tt.tiers {
				if _, ok := s["gre_"+tier+"_calls"]; !ok {
					t.Errorf("stats: no gre_%s_calls", tier)
				}
			}
		})
	}
}

// TestRunStops: Run returns when its context ends, and with the queue
// set's error when one fails; the fast path's backend is let go of (not
// removed: persistent) either way.
func TestRunStops(t *testing.T) {
	kernel := &memBackend{name: PathKernel}
	g, qs, err := testGateway(t, Config{GREPath: PathKernel}, map[string]*memBackend{PathKernel: kernel})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	time.Sleep(10 * time.Millisecond)
	qs[1].Fail(errors.New("netlink: socket closed"))
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "GRE queues stopped: netlink: socket closed") {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after a queue failure")
	}
	cancel()
	if !kernel.closed {
		t.Error("backend not closed")
	}
}
