package gateway

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

func TestJudge(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	good := HealthFacts{
		At: at, QueuesBound: true, RulesKept: true, RulesRepair: true,
		GREPathRequested: PathAuto, GREPathInUse: PathBPF,
		FastPaths: []FastPathHealth{{Name: PathBPF}, {Name: PathKernel}},
		StateFile: true, StateWritten: at.Add(-15 * time.Second), SnapshotInterval: 10 * time.Second,
		CallsActive: 3, CallsPending: 1, MaxCalls: 4096,
		QueueDrops: 7, QueueDropsGrew: at.Add(-time.Minute), // long ago
	}
	for _, tt := range []struct {
		name    string
		change  func(*HealthFacts)
		part    string // "": healthy
		detail  string
		restart bool
	}{
		{"healthy", func(*HealthFacts) {}, "", "", false},
		{"queues unbound", func(f *HealthFacts) { f.QueuesBound = false }, PartQueues, "not bound", true},
		{"queue drops growing", func(f *HealthFacts) { f.QueueDropsGrew = at.Add(-2 * time.Second) }, PartQueues, "overflowed 2s ago (7 packets", false},
		{"queue drops just outside the window", func(f *HealthFacts) { f.QueueDropsGrew = at.Add(-OverflowWindow) }, "", "", false},
		{"rules missing, no repair", func(f *HealthFacts) { f.RulesMissing, f.RulesRepair = 3, false }, PartRules, "3 rules or chains differ from the configuration (not repaired: --repair-rules=false)", false},
		{"rules missing after a repair", func(f *HealthFacts) { f.RulesMissing = 1 }, PartRules, "the repair failed", false},
		{"rules not kept", func(f *HealthFacts) { f.RulesKept, f.RulesMissing = false, 2 }, "", "", false},
		{"fast path failing", func(f *HealthFacts) { f.FastPaths[1] = FastPathHealth{Name: PathKernel, Failing: true, Errors: 4} }, PartFastPath, "the kernel path's kernel objects refuse updates or reads (4 errors)", false},
		{"auto got the kernel path", func(f *HealthFacts) { f.GREPathInUse, f.FastPaths = PathKernel, f.FastPaths[1:] }, "", "", false},
		{"auto got no fast path", func(f *HealthFacts) { f.GREPathInUse, f.FastPaths = PathQueue, nil }, PartFastPath, "auto found no fast path", false},
		{"queue asked, queue in use", func(f *HealthFacts) { f.GREPathRequested, f.GREPathInUse, f.FastPaths = PathQueue, PathQueue, nil }, "", "", false},
		{"state file late", func(f *HealthFacts) {
			f.StateWritten, f.StateError = at.Add(-25*time.Second), "open /var/lib/pptpgw/state.json.tmp: permission denied"
		}, PartState, "not written for 25s (every 10s): open /var/lib/pptpgw/state.json.tmp: permission denied", false},
		{"no state file", func(f *HealthFacts) { f.StateFile, f.StateWritten = false, time.Time{} }, "", "", false},
		{"not running yet", func(f *HealthFacts) { f.StateWritten = time.Time{} }, "", "", false},
		{"never written", func(f *HealthFacts) { f.StateWritten, f.StateError = time.Time{}, "disk full" }, PartState, "never written: disk full", false},
		{"table full", func(f *HealthFacts) { f.CallsActive, f.MaxCalls = 1, 1 }, PartCalls, "full (1 up, 1 pending, --max-calls 1)", false},
		{"table full of pending calls", func(f *HealthFacts) { f.CallsActive, f.CallsPending, f.MaxCalls = 0, 2, 2 }, PartCalls, "full", false},
		{"events dropping", func(f *HealthFacts) { f.EventsDropped, f.EventsDroppedGrew = 12, at }, PartEvents, "dropped 0s ago (12 since start)", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := good
			f.FastPaths = slices.Clone(good.FastPaths)
			tt.change(&f)
			ps := Judge(f)
			if tt.part == "" {
				if len(ps) != 0 {
					t.Fatalf("problems %+v, want none", ps)
				}
				return
			}
			if len(ps) != 1 || ps[0].Part != tt.part || !strings.Contains(ps[0].Detail, tt.detail) || ps[0].Restart != tt.restart {
				t.Fatalf("problems %+v, want one %s %q restart=%v", ps, tt.part, tt.detail, tt.restart)
			}
		})
	}
}

// errState is a state store that cannot write.
type errState struct{ err error }

func (s *errState) Read(*conntrack.Snapshot) (bool, error) { return false, nil }
func (s *errState) Write(conntrack.Snapshot) error         { return s.err }

// TestHealthFacts: the facts follow the gateway: drops seen growing, the
// state file's last write, a failing fast path, the queues stopping.
func TestHealthFacts(t *testing.T) {
	kernel := &memBackend{name: PathKernel}
	var drops uint64
	st := &errState{}
	g, qs, err := testGatewayDeps(t, Config{GREPath: PathKernel, SnapshotInterval: time.Minute},
		map[string]*memBackend{PathKernel: kernel}, func(d *Deps) {
			d.QueueDrops = func(first, last uint16) uint64 { return drops }
			d.State = st
		})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	now := time.Now()
	if ps := Judge(g.Health(now)); len(ps) != 0 {
		t.Fatalf("fresh gateway: %+v", ps)
	}
	drops = 5
	f := g.Health(now.Add(time.Second))
	if f.QueueDrops != 5 || !f.QueueDropsGrew.Equal(now.Add(time.Second)) {
		t.Errorf("drops %d grew %v", f.QueueDrops, f.QueueDropsGrew)
	}
	if ps := Judge(f); len(ps) != 1 || ps[0].Part != PartQueues {
		t.Errorf("drops growing: %+v", ps)
	}
	if f := g.Health(now.Add(20 * time.Second)); !f.QueueDropsGrew.Equal(now.Add(time.Second)) || len(Judge(f)) != 0 {
		t.Errorf("drops still; grew %v, problems %+v", f.QueueDropsGrew, Judge(f))
	}
	st.err = errors.New("read-only file system")
	g.snapshot()
	if ps := Judge(g.Health(now.Add(3 * time.Minute))); len(ps) != 1 || ps[0].Part != PartState || !strings.HasSuffix(ps[0].Detail, ": read-only file system") {
		t.Errorf("state file unwritable: %+v", ps)
	}
	st.err = nil
	g.snapshot()
	f = g.Health(now.Add(30 * time.Second))
	if f.StateError != "" || time.Since(f.StateWritten) > time.Second {
		t.Errorf("after a write: %q %v", f.StateError, f.StateWritten)
	}
	if len(f.FastPaths) != 1 || f.FastPaths[0].Name != PathKernel || f.FastPaths[0].Failing {
		t.Errorf("fast paths %+v", f.FastPaths)
	}
	qs[0].Close()
	if ps := Judge(g.Health(now.Add(40 * time.Second))); len(ps) != 1 || ps[0].Part != PartQueues || !ps[0].Restart {
		t.Errorf("queues closed: %+v", ps)
	}
}
