package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/logging"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/bpf"
	"github.com/pptpgw/pptpgw/nat/fastpath"
	"github.com/pptpgw/pptpgw/nat/gateway"
	"github.com/pptpgw/pptpgw/nat/ha"
	"github.com/pptpgw/pptpgw/nat/nft"
	"github.com/pptpgw/pptpgw/nat/rules"
	"github.com/pptpgw/pptpgw/nat/silence"
)

// daemon is `pptpgw run`: configuration, signals and the admin socket
// around a gateway.Gateway, which is the packet path and its state.
type daemon struct {
	cfg   *config.Config
	log   *zap.Logger
	level zap.AtomicLevel
	gw    *gateway.Gateway
	admin *admin.Server
	calls *callMetrics // call events as metrics (histograms, refusals by reason)
}

func limitsOf(r config.Reloadable) conntrack.Limits {
	return conntrack.Limits{MaxCalls: r.MaxCalls, MaxCallsPerInside: r.MaxCallsPerInside, GREIdle: r.GREIdle,
		ControlIdle: r.ControlIdle, SetupTimeout: r.SetupTimeout, CloseLinger: r.CloseLinger,
		RestoreGrace: r.RestoreGrace}
}

func rulesConfig(c *config.Config) rules.Config {
	return rules.Config{Queue: c.Queue, Queues: uint16(c.Queues), FailOpen: c.FailOpen, MarkBit: c.MarkBit}
}

// gatewayConfig turns the configuration into the gateway's.
func gatewayConfig(cfg *config.Config, log *zap.Logger) gateway.Config {
	return gateway.Config{
		Rules: rulesConfig(cfg), InstallRules: cfg.InstallRules, RepairRules: cfg.RepairRules, Force: cfg.Force,
		Limits: limitsOf(cfg.Reloadable), Policy: policyOf(cfg.Policy),
		PublicIPs: cfg.PublicIPs, LocalGREAccept: cfg.LocalGRE == config.LocalGREAccept,
		GREPath: cfg.GREPath, BPFInterfaces: cfg.BPFInterfaces, SnapshotInterval: cfg.SnapshotInterval,
		HA:       haConfig(cfg.HA),
		Observer: newCallLog(log.Named("calls")), Log: log,
	}
}

func haConfig(c config.HA) ha.Config {
	return ha.Config{Endpoints: c.Etcd, Node: c.Node, Prefix: c.Prefix, LeaseTTL: c.LeaseTTL,
		CAFile: c.CA, CertFile: c.Cert, KeyFile: c.Key}
}

// gatewayDeps are the real host: iptables, the state file, the kernel
// backends of the fast path.
func gatewayDeps(cfg *config.Config, log *zap.Logger) (gateway.Deps, error) {
	ipt, err := rules.New("")
	if err != nil {
		return gateway.Deps{}, err
	}
	markBit, pinDir, maxCalls := cfg.MarkBit, cfg.BPFPinDir, cfg.MaxCalls
	return gateway.Deps{
		IPTables: ipt,
		Silence:  silence.New(0),
		State:    gateway.StateFile(cfg.StateFile),
		Backends: map[string]func() (fastpath.Backend, error){
			gateway.PathBPF: func() (fastpath.Backend, error) {
				// The probe says what is missing in words an operator acts on;
				// Open's error would be the verifier's or the kernel's.
				if r := bpf.Probe(pinDir); !r.OK() {
					return nil, errors.New(r.Reason())
				}
				return bpf.Open(bpf.Config{PinDir: pinDir, MaxCalls: maxCalls, Log: log.Named("bpf")})
			},
			gateway.PathKernel: func() (fastpath.Backend, error) { return nft.New(nft.Config{MarkBit: markBit}) },
		},
		RemoveBackend: map[string]func() (bool, error){
			gateway.PathKernel: nft.RemoveTable,
			gateway.PathBPF:    func() (bool, error) { return removeBPF(pinDir) },
		},
	}, nil
}

// removeBPF takes away what the bpf path left pinned and attached, and
// reports whether there was something.
func removeBPF(pinDir string) (bool, error) {
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		return false, bpf.Remove(pinDir) // cls_bpf filters need no pins
	}
	return true, bpf.Remove(pinDir)
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
	d := &daemon{cfg: cfg, log: log, level: level}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.start(ctx); err != nil {
		d.stop()
		// One line on stderr (DESIGN.md "Command line"): the log goes to
		// stderr as well, so the failure is not logged a second time.
		fmt.Fprintf(stderr, "pptpgw run: %v\n", err)
		return 1
	}
	d.notifySystemd(sddaemon.SdNotifyReady)
	go d.watchHealth(ctx)
	return d.run(ctx, cancel)
}

func (d *daemon) start(ctx context.Context) error {
	cfg := d.cfg
	for _, w := range cfg.Warnings() {
		d.log.Warn("configuration", zap.String("warning", w))
	}
	// Logged with "pptpgw started", not now: a start that fails prints
	// its one line and nothing else.
	backend := "unknown"
	if mode, err := rules.Backend(""); err == nil {
		backend = string(mode)
	}
	deps, err := gatewayDeps(cfg, d.log)
	if err != nil {
		return err
	}
	gcfg := gatewayConfig(cfg, d.log)
	d.calls = newCallMetrics()
	gcfg.Observer = teeObserver{d.calls, gcfg.Observer} // the metrics first: they never block
	if d.gw, err = gateway.New(gcfg, deps); err != nil {
		return err
	}
	if err := d.gw.Start(ctx); err != nil {
		return err
	}
	logPolicy(d.log, cfg.Policy)
	publishSettings(cfg) // settings.go
	d.admin = admin.NewServer(d, d.log.Named("admin"), newRegistry(d))
	if err := d.admin.Serve(cfg.AdminSocket, cfg.AdminGroup); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if cfg.MetricsListen != "" {
		if err := d.admin.ServeMetrics(cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	fields := []zap.Field{zap.String("version", version), zap.String("iptables_backend", backend),
		zap.String("gre_path_in_use", d.gw.Path().Path)}
	for _, s := range cfg.Effective() {
		fields = append(fields, zap.String(s.Name, s.Value))
	}
	d.log.Info("pptpgw started", fields...)
	return nil
}

// run runs the gateway until a signal or a queue failure.
func (d *daemon) run(ctx context.Context, cancel context.CancelFunc) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- d.gw.Run(ctx) }()
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			d.log.Info("stopping", zap.String("signal", s.String()))
			d.notifySystemd(sddaemon.SdNotifyStopping)
			cancel()
			<-done
			d.stop()
			return 0
		case err := <-done:
			d.log.Error("gateway stopped", zap.Error(err))
			d.stop()
			return 1
		}
	}
}

func (d *daemon) reload() {
	next, restart, err := d.cfg.Reload(os.Environ())
	if err != nil {
		d.log.Error("reload refused, keeping the running configuration", zap.Error(err))
		return
	}
	if lvl, err := logging.ParseLevel(next.LogLevel); err == nil {
		d.level.SetLevel(lvl)
	}
	d.gw.Reload(limitsOf(next.Reloadable), policyOf(next.Policy), next.SnapshotInterval)
	logPolicy(d.log, next.Policy)
	d.cfg = next
	publishSettings(next)
	if len(restart) > 0 {
		d.log.Warn("reloaded; these options need a restart", zap.Strings("options", restart))
		return
	}
	d.log.Info("reloaded", zap.Int("max_calls", next.MaxCalls), zap.String("log_level", next.LogLevel))
}

// stop takes the gateway down (state file written, --install-rules
// undone) and closes the admin socket.
func (d *daemon) stop() {
	if d.gw != nil {
		d.gw.Stop()
	}
	if d.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.admin.Shutdown(ctx)
		cancel()
	}
}

// Calls, Stats and DeleteCall serve the admin socket.
func (d *daemon) Calls() []admin.CallView { return admin.Views(d.gw.Calls()) }

func (d *daemon) Stats() map[string]uint64 { return d.gw.Stats() }

func (d *daemon) DeleteCall(id string) error {
	if err := d.gw.DeleteCall(id); err != nil {
		if errors.Is(err, gateway.ErrNoCall) {
			return admin.ErrNotFound
		}
		return err
	}
	return nil
}
