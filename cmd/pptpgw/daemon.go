package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/logging"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/statefile"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
	"github.com/pptpgw/pptpgw/nat/ctnl"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/nft"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// daemon is `pptpgw run`: the packet path behind NFQUEUE, the admin
// socket, the state file and the signals.
type daemon struct {
	cfg       *config.Config
	log       *zap.Logger
	level     zap.AtomicLevel
	table     *conntrack.Table
	engine    *nat.Engine
	ctlQ      *nfq.Runner // control queues (may be fail-open)
	greQ      *nfq.Runner // GRE and ICMP queues (always fail-closed)
	admin     *admin.Server
	installed rules.Report
	ipt       rules.IPTables
	started   time.Time
	// workers by queue number: each queue has its own goroutine.
	workers  map[uint16]*nat.Worker
	ctlFirst uint16
	ctlLast  uint16
	markBit  uint32
	fast     *nft.Manager // --gre-path kernel (fastpath.go)
}

func limitsOf(r config.Reloadable) conntrack.Limits {
	return conntrack.Limits{MaxCalls: r.MaxCalls, MaxCallsPerInside: r.MaxCallsPerInside, GREIdle: r.GREIdle,
		ControlIdle: r.ControlIdle, SetupTimeout: r.SetupTimeout, CloseLinger: r.CloseLinger}
}

func rulesConfig(c *config.Config) rules.Config {
	return rules.Config{Queue: c.Queue, Queues: uint16(c.Queues), FailOpen: c.FailOpen, MarkBit: c.MarkBit}
}

// cmdRun is `pptpgw run`.
func cmdRun(args []string, stderr *os.File) int {
	cfg, err := config.Parse(config.CmdRun, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdRun, stderr)
	}
	log, level, err := logging.New(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "pptpgw run: %v\n", err)
		return 2
	}
	defer log.Sync()
	d := &daemon{cfg: cfg, log: log, level: level, started: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.start(ctx); err != nil {
		d.stop()
		// One line on stderr (DESIGN.md "Command line"): the log goes to
		// stderr as well, so the failure is not logged a second time.
		fmt.Fprintf(stderr, "pptpgw run: %v\n", err)
		return 1
	}
	return d.loop(ctx)
}

func (d *daemon) start(ctx context.Context) error {
	cfg := d.cfg
	for _, w := range cfg.Warnings() {
		d.log.Warn("configuration", zap.String("warning", w))
	}
	ipt, err := rules.New("")
	if err != nil {
		return err
	}
	d.ipt = ipt
	// Logged with "pptpgw started", not now: a start that fails prints
	// its one line and nothing else.
	backend := "unknown"
	if mode, err := rules.Backend(""); err == nil {
		backend = string(mode)
	}
	helpers, err := rules.HelperAttached(ipt)
	if err != nil {
		return fmt.Errorf("look for the kernel's PPTP helper: %w", err)
	}
	if len(helpers) > 0 && !cfg.Force {
		return fmt.Errorf("the kernel's own PPTP helper is attached; delete the rule (iptables %s) or start with --force",
			strings.Replace(helpers[0], " -A ", " -D ", 1))
	}
	rcfg := rulesConfig(cfg)
	if cfg.InstallRules {
		if d.installed, err = rules.Install(ipt, rcfg); err != nil {
			return fmt.Errorf("install rules: %w", err)
		}
	} else {
		diff, err := rules.Verify(ipt, rcfg)
		if err != nil {
			return fmt.Errorf("verify rules: %w", err)
		}
		if len(diff) > 0 {
			return fmt.Errorf("installed rules do not match this configuration (run `pptpgw rules install` with the same flags, or --install-rules): %s",
				strings.Join(diff, "; "))
		}
	}
	// Call events reach the log through a bounded buffer: a stuck log
	// sink costs dropped events (events_dropped), never a packet.
	events := conntrack.NewEventBuffer(newCallLog(d.log.Named("calls")), 0)
	go events.Run(ctx)
	d.table = conntrack.New(limitsOf(cfg.Reloadable), events)
	d.restore()
	d.setPolicy(cfg.Policy) // policy.go, after restore: restored calls are checked too
	ct, err := ctnl.Dial(0)
	if err != nil {
		return err
	}
	res := &liveResolver{ct: ct, publicIP: cfg.PublicIPs, log: d.log.Named("conntrack")}
	d.engine = nat.NewEngine(d.table, res, nat.Config{LocalGREAccept: cfg.LocalGRE == config.LocalGREAccept})
	d.markBit = cfg.MarkBit
	d.ctlFirst, d.ctlLast = cfg.ControlQueues()
	greFirst, greLast := cfg.GREQueues()
	d.workers = make(map[uint16]*nat.Worker, 2*cfg.Queues)
	for q := d.ctlFirst; q <= greLast; q++ {
		d.workers[q] = d.engine.NewWorker()
	}
	// Control and GRE queues are bound separately: only the control ones
	// may be fail-open.
	if d.ctlQ, err = nfq.Open(ctx, nfq.Config{Queue: d.ctlFirst, Queues: uint16(cfg.Queues), FailOpen: cfg.FailOpen,
		Logger: d.log.Named("nfq")}, d.handle); err != nil {
		return err
	}
	if d.greQ, err = nfq.Open(ctx, nfq.Config{Queue: greFirst, Queues: uint16(cfg.Queues), Logger: d.log.Named("nfq")}, d.handle); err != nil {
		return err
	}
	if err := d.startFastPath(ctx); err != nil { // fastpath.go
		return err
	}
	reg := newRegistry(d)
	d.admin = admin.NewServer(d, d.log.Named("admin"), reg)
	if err := d.admin.Serve(cfg.AdminSocket, cfg.AdminGroup); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if cfg.MetricsListen != "" {
		if err := d.admin.ServeMetrics(cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	fields := []zap.Field{zap.String("version", version), zap.String("iptables_backend", backend)}
	for _, s := range cfg.Effective() {
		fields = append(fields, zap.String(s.Name, s.Value))
	}
	d.log.Info("pptpgw started", fields...)
	return nil
}

// handle is the nfq Handler: one Worker per queue, so it allocates nothing.
func (d *daemon) handle(q uint16, pkt []byte, mark uint32, meta nfq.Meta) (nfq.Verdict, uint32, bool) {
	hook := nat.HookControl
	if q > d.ctlLast {
		switch {
		case meta.Hook == nfq.HookPrerouting:
			hook = nat.HookGREIn
		case !meta.HasInDev:
			hook = nat.HookLocalOut
		default:
			hook = nat.HookGREOut
		}
	}
	v, _ := d.workers[q].Process(pkt, hook, time.Now().UnixNano())
	switch v {
	case nat.Drop:
		return nfq.Drop, mark, false
	case nat.AcceptModified:
		if hook == nat.HookGREIn {
			mark |= d.markBit
		}
		return nfq.Accept, mark, true
	}
	return nfq.Accept, mark, false
}

// restore reads the state file; a bad one is set aside and the daemon
// starts empty.
func (d *daemon) restore() {
	var snap conntrack.Snapshot
	found, err := statefile.Read(d.cfg.StateFile, &snap, conntrack.SnapshotVersion)
	var bad *statefile.BadFileError
	switch {
	case errors.As(err, &bad):
		d.log.Warn("state file unusable, starting empty", zap.String("path", bad.Path), zap.String("kept_as", bad.BadPath), zap.String("reason", bad.Reason))
		return
	case err != nil:
		d.log.Warn("state file unreadable, starting empty", zap.Error(err))
		return
	case !found:
		return
	}
	skipped, err := d.table.Restore(snap)
	if err != nil {
		d.log.Warn("state file not restored", zap.Error(err))
		return
	}
	d.log.Info("state restored", zap.Int("conns", len(snap.Conns)), zap.Int("skipped", skipped))
}

func (d *daemon) snapshot() {
	if err := statefile.Write(d.cfg.StateFile, d.table.Snapshot()); err != nil {
		d.log.Error("write state file", zap.Error(err))
	}
}

// loop runs until a signal or a queue failure.
func (d *daemon) loop(ctx context.Context) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	snap := time.NewTicker(d.cfg.SnapshotInterval)
	defer snap.Stop()
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload(snap)
				continue
			}
			d.log.Info("stopping", zap.String("signal", s.String()))
			d.stop()
			return 0
		case <-expire.C:
			d.table.Expire(time.Now().UnixNano())
		case <-snap.C:
			d.snapshot()
		case <-d.ctlQ.Done():
			d.log.Error("control queues stopped", zap.Error(d.ctlQ.Wait()))
			d.stop()
			return 1
		case <-d.greQ.Done():
			d.log.Error("GRE queues stopped", zap.Error(d.greQ.Wait()))
			d.stop()
			return 1
		}
	}
}

func (d *daemon) reload(snap *time.Ticker) {
	next, restart, err := d.cfg.Reload(os.Environ())
	if err != nil {
		d.log.Error("reload refused, keeping the running configuration", zap.Error(err))
		return
	}
	if lvl, err := logging.ParseLevel(next.LogLevel); err == nil {
		d.level.SetLevel(lvl)
	}
	d.table.SetLimits(limitsOf(next.Reloadable))
	d.setPolicy(next.Policy) // policy.go
	if next.SnapshotInterval != d.cfg.SnapshotInterval {
		snap.Reset(next.SnapshotInterval)
	}
	d.cfg = next
	if len(restart) > 0 {
		d.log.Warn("reloaded; these options need a restart", zap.Strings("options", restart))
		return
	}
	d.log.Info("reloaded", zap.Int("max_calls", next.MaxCalls), zap.String("log_level", next.LogLevel))
}

// stop unbinds the queues, writes the state file and removes what
// --install-rules installed; persistent rules stay.
func (d *daemon) stop() {
	for _, q := range []*nfq.Runner{d.ctlQ, d.greQ} {
		if q != nil {
			q.Close()
		}
	}
	d.stopFastPath() // fastpath.go
	if d.table != nil {
		d.snapshot()
	}
	if d.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.admin.Shutdown(ctx)
		cancel()
	}
	if d.ipt != nil && !d.installed.Empty() {
		if err := rules.Undo(d.ipt, d.installed); err != nil {
			d.log.Error("remove installed rules", zap.Error(err))
		}
	}
}

// Calls, Stats and DeleteCall serve the admin socket.
func (d *daemon) Calls() []admin.CallView { return admin.Views(d.table.Calls()) }

func (d *daemon) DeleteCall(id string) error {
	if err := d.table.Delete(id, time.Now().UnixNano()); err != nil {
		if errors.Is(err, conntrack.ErrNoCall) {
			return admin.ErrNotFound
		}
		return err
	}
	return nil
}

func (d *daemon) Stats() map[string]uint64 {
	s := d.table.Stats()
	e := d.engine
	for _, r := range nat.Reasons() {
		s["packets_"+r.String()] = e.Count(r)
	}
	s["packets_total"] = e.Packets()
	s["gre_in"] = e.Count(nat.ReasonGREIn)
	s["gre_out"] = e.Count(nat.ReasonGREOut)
	s["gre_dropped_unknown_call"] = e.Count(nat.ReasonUnknownCall)
	s["gre_dropped_refused_call"] = e.Count(nat.ReasonRefusedCall)
	d.fastPathStats(s) // fastpath.go
	s["queue_drops"] = queueDrops(d.ctlFirst, d.ctlFirst+2*uint16(d.cfg.Queues)-1)
	for _, q := range []*nfq.Runner{d.ctlQ, d.greQ} {
		qs := q.Stats()
		s["queue_verdict_errors"] += qs.VerdictErrors
		s["queue_enobufs"] += qs.NoBuffers
		s["queue_handler_panics"] += qs.Panics
	}
	return s
}

// queueDrops sums the kernel's drop counters of queues first..last.
func queueDrops(first, last uint16) uint64 {
	f, err := os.Open("/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		return 0
	}
	defer f.Close()
	qs, err := nfq.ReadProcStats(f)
	if err != nil {
		return 0
	}
	var n uint64
	for _, q := range qs {
		if q.Queue >= first && q.Queue <= last {
			n += uint64(q.QueueDropped) + uint64(q.UserDropped)
		}
	}
	return n
}
