// Package gateway is what a running pptpgw is: the call table and the
// packet engine behind the NFQUEUE queues, the rules that feed them, the
// resolver of new control connections, the GRE fast path and its
// reconciler, the idle timeouts and the state file. cmd/pptpgw turns flags
// and files into a Config, calls Start and Run, and serves the admin
// socket from Calls, Stats and DeleteCall.
//
// Goroutines, each named for its job (pprof label "goroutine") and each
// ending with Run's context: expireCalls, writeState, reconcileFastPath,
// repairRules, replicate (ha.go), plus the queue sources' own receive loops. The packet path
// (handle) runs on the queue sources' goroutines and takes no lock of its
// own: the workers are per queue, the interface set is copy-on-write.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
	"github.com/pptpgw/pptpgw/nat/events"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/ha"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// GRE paths (--gre-path).
const (
	PathAuto   = "auto"
	PathBPF    = "bpf"
	PathKernel = "kernel"
	PathQueue  = "queue"
)

// Config is a gateway's configuration, already checked.
type Config struct {
	Rules rules.Config // queues, fail-open, mark bit
	// InstallRules installs the rules at Start and removes them (and
	// the fast path's kernel objects) when Run returns; else the rules
	// must be in place (`pptpgw rules install`) and everything stays.
	InstallRules bool
	// RepairRules puts back every few seconds what a firewall reload
	// removed; false only reports it (--repair-rules).
	RepairRules bool
	// Force starts even with the kernel's own PPTP helper attached.
	Force          bool
	Limits         conntrack.Limits
	Policy         *conntrack.Policy
	PublicIPs      []netip.Addr // --public-ip
	LocalGREAccept bool         // --local-gre accept
	GREPath        string       // PathAuto (default), PathBPF, PathKernel, PathQueue
	// BPFInterfaces, when set, are the interfaces the bpf path attaches
	// to, instead of those learnt from the control segments' devices.
	BPFInterfaces []string
	// SnapshotInterval is how often the state file is written (default
	// 10 s); it is written at Stop too.
	SnapshotInterval time.Duration
	// StateWriteGap is the shortest time between two writes on change
	// (a call set up or torn down; default DefaultStateWriteGap).
	StateWriteGap time.Duration
	// ExpireInterval is how often idle calls and connections are expired
	// (default 1 s).
	ExpireInterval time.Duration
	HA             ha.Config // replication of a gateway pair (ha.go); off without endpoints
	Observer       conntrack.Observer
	Log            *zap.Logger
}

// Queues is a bound set of queues: the NFQUEUE runner, or an in-memory
// source in tests.
type Queues interface {
	Done() <-chan struct{}
	Wait() error
	Close() error
	Stats() nfq.Stats
}

// Deps are the gateway's ties to the host; New fills the missing ones
// with the real thing.
type Deps struct {
	// OpenQueues binds queues and calls h for each packet (nfq.Open).
	OpenQueues func(ctx context.Context, cfg nfq.Config, h nfq.Handler) (Queues, error)
	// Resolver learns new control connections (ctnetlink); nil: the
	// kernel's conntrack table.
	Resolver conntrack.Resolver
	// IPTables manages the rules; nil leaves them alone (tests).
	IPTables rules.IPTables
	// Silence is the nf_tables copy of the silence rules, which a
	// firewall reload does not touch (nat/silence); nil: none.
	Silence interface {
		rules.Silencer
		Remove() error
	}
	// Backends make the fast path's backends by --gre-path name; a name
	// missing here is not available.
	Backends map[string]func() (fastpath.Backend, error)
	// RemoveBackend deletes what a backend of that name left in the
	// kernel (a run with another --gre-path before).
	RemoveBackend map[string]func() (bool, error)
	// State reads and writes the state file; nil: none.
	State StateStore
	// QueueDrops reads the kernel's drop counters of queues first..last.
	QueueDrops func(first, last uint16) uint64
}

// Gateway is a running pptpgw.
type Gateway struct {
	cfg    Config
	deps   Deps
	log    *zap.Logger
	layout rules.Layout

	table     *conntrack.Table
	events    *conntrack.EventBuffer // the observer behind a bounded buffer
	hub       *events.Hub            // the event stream (events.go)
	engine    *nat.Engine
	workers   []*nat.Worker // by queue number - layout.First
	ctlQ      Queues        // control queues (may be fail-open)
	greQ      Queues        // GRE and ICMP queues (always fail-closed)
	installed rules.Report
	keeper    *rules.Keeper // nil without IPTables

	fast       []*fastpath.Reconciler // by tier; none: GRE through the queues
	pathChoice PathChoice
	ifaces     ifaceSet
	ha         *ha.Replicator // nil: no pair

	health healthTracker // what Health remembers between calls

	state    stateWriter // state.go
	restored bool        // the state file held connections

	mu       sync.Mutex // guards reloadable settings below
	snapTick *time.Ticker
	stopOnce sync.Once
}

// New checks cfg and returns a gateway that Start brings up.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Rules.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Rules.MarkBit == 0 {
		cfg.Rules.MarkBit = rules.DefaultMarkBit
	}
	if cfg.Rules.Queues == 0 {
		cfg.Rules.Queues = 1
	}
	if cfg.GREPath == "" {
		cfg.GREPath = PathAuto
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = 10 * time.Second
	}
	if cfg.StateWriteGap <= 0 {
		cfg.StateWriteGap = DefaultStateWriteGap
	}
	if cfg.ExpireInterval <= 0 {
		cfg.ExpireInterval = time.Second
	}
	if deps.OpenQueues == nil {
		deps.OpenQueues = func(ctx context.Context, c nfq.Config, h nfq.Handler) (Queues, error) { return nfq.Open(ctx, c, h) }
	}
	if deps.QueueDrops == nil {
		deps.QueueDrops = procQueueDrops
	}
	return &Gateway{cfg: cfg, deps: deps, log: cfg.Log, layout: cfg.Rules.Layout(), hub: events.NewHub()}, nil
}

// Start brings the gateway up: rules, call table (restored from the state
// file), queues, fast path. On error, what was set up is taken down again.
func (g *Gateway) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			g.Stop()
		}
	}()
	if err := g.startRules(); err != nil {
		return err
	}
	// Call events reach the observer (the log) through a bounded buffer:
	// a stuck log sink costs dropped events (events_dropped), never a
	// packet. The event stream hears them too (events.go).
	g.table = conntrack.New(g.cfg.Limits, g.observer())
	g.restore()
	if g.cfg.Policy != nil {
		g.table.SetPolicy(g.cfg.Policy, time.Now().UnixNano()) // after restore: restored calls are judged too
	}
	if err := g.startHA(); err != nil { // after restore: the records of a previous life are the older
		return err
	}
	res := g.deps.Resolver
	if res == nil {
		if res, err = newLiveResolver(g.cfg.PublicIPs, g.log.Named("conntrack")); err != nil {
			return err
		}
	}
	g.confirmRestored(res) // state.go
	g.engine = nat.NewEngine(g.table, res, nat.Config{LocalGREAccept: g.cfg.LocalGREAccept})
	if g.cfg.LocalGREAccept {
		g.log.Warn("--local-gre accept is deprecated: the router's own PPTP calls are tracked without it, " +
			"and it lets GRE v1 for every unknown Call ID reach the router")
	}
	if err := g.openQueues(ctx); err != nil {
		return err
	}
	return g.startFastPath()
}

// startRules installs the rules (--install-rules) or checks that the
// installed ones match this configuration.
func (g *Gateway) startRules() error {
	ipt := g.deps.IPTables
	if ipt == nil {
		return nil
	}
	helpers, err := rules.HelperAttached(ipt)
	if err != nil {
		return fmt.Errorf("look for the kernel's PPTP helper: %w", err)
	}
	if len(helpers) > 0 && !g.cfg.Force {
		return fmt.Errorf("the kernel's own PPTP helper is attached; delete the rule (iptables %s) or start with --force",
			strings.Replace(helpers[0], " -A ", " -D ", 1))
	}
	if g.cfg.InstallRules {
		if g.installed, err = rules.Install(ipt, g.cfg.Rules); err != nil {
			return fmt.Errorf("install rules: %w", err)
		}
	} else {
		diff, err := rules.Verify(ipt, g.cfg.Rules)
		if err != nil {
			return fmt.Errorf("verify rules: %w", err)
		}
		if len(diff) > 0 {
			return fmt.Errorf("installed rules do not match this configuration (run `pptpgw rules install` with the same flags, or --install-rules): %s",
				strings.Join(diff, "; "))
		}
	}
	g.keeper = rules.NewKeeper(ipt, g.cfg.Rules, g.cfg.RepairRules, g.log.Named("rules"))
	if g.deps.Silence != nil {
		g.keeper.Silence = g.deps.Silence
	}
	g.keeper.Check() // creates the nf_tables silence table
	return nil
}

// repairRules re-verifies the rules (and the silence table) every few
// seconds and puts back what a firewall reload removed.
func (g *Gateway) repairRules(ctx context.Context) {
	every(ctx, rules.DefaultRepairInterval, func(time.Time) { g.keeper.Check() }) // logs and counts what it found
}

// every runs fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func(now time.Time)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}

// Run keeps the gateway going until ctx ends (nil) or a queue set fails
// (its error); either way it stops everything before returning.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		g.Stop()
	}()
	g.mu.Lock()
	g.snapTick = time.NewTicker(g.cfg.SnapshotInterval)
	g.mu.Unlock()
	g.health.stateWrite(time.Now(), nil) // the state file is due two intervals from now
	if g.events != nil {
		g.spawn(ctx, &wg, "deliverEvents", g.events.Run)
	}
	g.spawn(ctx, &wg, "expireCalls", g.expireCalls)
	g.spawn(ctx, &wg, "writeState", g.writeState)
	for _, r := range g.fast {
		g.spawn(ctx, &wg, "reconcileFastPath/"+r.Backend().Name(), r.Run)
	}
	if g.ifaces.be != nil {
		g.spawn(ctx, &wg, "attachFastPath", func(ctx context.Context) { every(ctx, interfaceResync, g.ifaces.resync) })
	}
	if g.keeper != nil {
		g.spawn(ctx, &wg, "repairRules", g.repairRules)
	}
	if g.ha != nil {
		g.spawn(ctx, &wg, "replicate", g.ha.Run)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-g.ctlQ.Done():
		return fmt.Errorf("control queues stopped: %w", g.ctlQ.Wait())
	case <-g.greQ.Done():
		return fmt.Errorf("GRE queues stopped: %w", g.greQ.Wait())
	}
}

// spawn runs fn on its own goroutine, labelled with its name.
func (g *Gateway) spawn(ctx context.Context, wg *sync.WaitGroup, name string, fn func(context.Context)) {
	wg.Add(1)
	go pprof.Do(ctx, pprof.Labels("goroutine", name), func(ctx context.Context) {
		defer wg.Done()
		fn(ctx)
	})
}

func (g *Gateway) expireCalls(ctx context.Context) {
	every(ctx, g.cfg.ExpireInterval, func(now time.Time) { g.table.Expire(now.UnixNano()) })
}

// Reload puts new limits and policy in force and changes the snapshot
// interval (SIGHUP); calls up that no longer comply are cleared.
func (g *Gateway) Reload(limits conntrack.Limits, policy *conntrack.Policy, snapshotInterval time.Duration) {
	g.table.SetLimits(limits)
	if policy != nil {
		g.table.SetPolicy(policy, time.Now().UnixNano())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if snapshotInterval > 0 && snapshotInterval != g.cfg.SnapshotInterval {
		g.cfg.SnapshotInterval = snapshotInterval
		if g.snapTick != nil {
			g.snapTick.Reset(snapshotInterval)
		}
	}
}

// Stop unbinds the queues, reads the fast path's counters a last time,
// writes the state file and removes what --install-rules installed;
// persistent rules and the fast path's kernel objects stay. Run calls it;
// calling it again does nothing.
func (g *Gateway) Stop() {
	g.stopOnce.Do(func() {
		for _, q := range []Queues{g.ctlQ, g.greQ} {
			if q != nil {
				q.Close()
			}
		}
		g.stopFastPath()
		if g.table != nil {
			g.snapshot()
		}
		if g.deps.IPTables != nil && !g.installed.Empty() {
			if err := rules.Undo(g.deps.IPTables, g.installed); err != nil {
				g.log.Error("remove installed rules", zap.Error(err))
			}
			if g.deps.Silence != nil {
				if err := g.deps.Silence.Remove(); err != nil {
					g.log.Warn("remove the nf_tables silence table", zap.Error(err))
				}
			}
		}
	})
}

// Table is the call table (tests, replication).
func (g *Gateway) Table() *conntrack.Table { return g.table }

// Calls returns the mapping table.
func (g *Gateway) Calls() []conntrack.CallInfo { return g.withNode(g.table.Calls()) }

// ErrNoCall: DeleteCall found no such call.
var ErrNoCall = conntrack.ErrNoCall

// DeleteCall removes a call by its admin id, leaving a tombstone.
func (g *Gateway) DeleteCall(id string) error {
	if err := g.table.Delete(id, time.Now().UnixNano()); err != nil {
		if errors.Is(err, conntrack.ErrNoCall) {
			return ErrNoCall
		}
		return err
	}
	return nil
}
