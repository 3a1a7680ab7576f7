// Package config is pptpgw's configuration contract (DESIGN.md "Command line"): defaults, then a
// YAML file (--config; its keys are the flag names), then PPTPGW_ environment variables (flag name
// upper-cased, dashes to underscores; lists comma-separated), then flags; later wins.
//
// Every error names its source (`--max-calls: ...`, `PPTPGW_GRE_PATH: ...`,
// `config file x.yaml: key "max-cals": unknown`) so main can print it as one line and exit 2.
package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// Subcommands whose options this package parses. replay has its own flags and no config file.
const (
	CmdRun     = "run"
	CmdRules   = "rules"
	CmdCalls   = "calls"
	CmdStats   = "stats"
	CmdHealth  = "health"
	CmdCheck   = "check"
	CmdEvents  = "events"
	CmdVersion = "version"
)

// Values of --gre-path, --local-gre and the rules actions.
const (
	GREPathAuto   = "auto" // the first of bpf, kernel that works, else queue
	GREPathBPF    = "bpf"
	GREPathKernel = "kernel"
	GREPathQueue  = "queue"

	LocalGREDrop   = "drop"
	LocalGREAccept = "accept"

	RulesInstall = "install"
	RulesRemove  = "remove"
	RulesShow    = "show"
)

// Defaults. The timeouts are chosen against PPTP's own clocks (RFC 2637): a live control
// connection carries at least an Echo-Request every 60 s, so control-idle must stay well above
// that; GRE may legitimately be silent while a user is idle (pppd sends no LCP echo by default).
const (
	// The call table's limits and timeouts; conntrack says why each value.
	DefaultMaxCalls          = conntrack.DefaultMaxCalls
	DefaultMaxCallsPerInside = conntrack.DefaultMaxCallsPerInside
	DefaultGREIdle           = conntrack.DefaultGREIdle
	DefaultControlIdle       = conntrack.DefaultControlIdle
	DefaultSetupTimeout      = conntrack.DefaultSetupTimeout
	DefaultCloseLinger       = conntrack.DefaultCloseLinger
	DefaultRestoreGrace      = conntrack.DefaultRestoreGrace
	// DefaultSnapshotInterval: the periodic write of the stream positions;
	// calls set up and torn down are written within DefaultStateWriteGap.
	DefaultSnapshotInterval = 10 * time.Second
	// DefaultMarkBit is the packet mark bit set on rewritten GRE (DESIGN.md), above the low bits
	// operators usually give to policy routing.
	DefaultMarkBit uint32 = 0x10000000
	// DefaultAdminSocket and DefaultStateFile are DESIGN.md's paths.
	DefaultAdminSocket = "/run/pptpgw/admin.sock"
	DefaultStateFile   = "/var/lib/pptpgw/state.json"
	DefaultBPFPinDir   = "/sys/fs/bpf/pptpgw"
	// MaxQueues bounds --queues: control and GRE together use 2*K queues.
	MaxQueues = 64
)

// Reloadable is the part of the configuration that SIGHUP changes without a restart: limits,
// timeouts and the log level. It is embedded in Config, so its fields read as Config's.
type Reloadable struct {
	MaxCalls          int           // --max-calls: calls in total
	MaxCallsPerInside int           // --max-calls-per-inside: calls per inside address
	GREIdle           time.Duration // --gre-idle: a call with no GRE for this long ends
	ControlIdle       time.Duration // --control-idle: a control connection silent this long ends
	SetupTimeout      time.Duration // --setup-timeout: a call not set up by then ends
	CloseLinger       time.Duration // --close-linger: rewrite records kept after a close
	RestoreGrace      time.Duration // --restore-grace: a restored connection not shown alive by then ends
	SnapshotInterval  time.Duration // --snapshot-interval: state file written this often
	LogLevel          string        // --log-level: debug, info, warn or error
}

// Config is the effective configuration of one subcommand. Fields that a subcommand does not
// take keep their defaults. A Config is not changed after Parse returns; Reload makes a new one.
type Config struct {
	Reloadable
	Policy // policy.go: reloadable too

	Subcommand string // the subcommand it was parsed for
	Action     string // rules: install, remove or show
	ConfigFile string // --config (or PPTPGW_CONFIG); "" for none

	Queue         uint16       // --queue: first control queue; GRE/ICMP use Queue+Queues...
	Queues        int          // --queues: number of control queues (1..MaxQueues)
	InstallRules  bool         // --install-rules
	RepairRules   bool         // --repair-rules: put back what a firewall reload removed (default true)
	FailOpen      bool         // --fail-open: control queues only
	Force         bool         // --force: start although the kernel's PPTP helper is attached
	GREPath       string       // --gre-path: auto, bpf, kernel or queue
	BPFInterfaces []string     // --bpf-interfaces
	BPFPinDir     string       // --bpf-pin-dir
	PublicIPs     []netip.Addr // --public-ip: explicit public addresses (IPv4), in order, no duplicates
	LocalGRE      string       // --local-gre: drop or accept
	MarkBit       uint32       // --mark-bit: exactly one bit set
	AdminSocket   string       // --admin-socket
	AdminGroup    string       // --admin-group: group owning the socket; "" leaves it alone
	// MetricsListen is the TCP address of the read-only /metrics listener; "" for none.
	MetricsListen string
	StateFile     string // --state-file
	HA            HA     // ha.go: --ha-*
	LogFormat     string // --log-format: json or console
	JSON          bool   // --json (calls, stats, health, check): flag only
	Live          bool   // --live (health): flag only
	Filter        Filter // filter.go: --inside, --peer, --type, --state (calls, events)

	args    []string          // the original command-line arguments, re-applied by Reload
	sources map[string]string // option name -> where its value came from
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Reloadable: Reloadable{
			MaxCalls:          DefaultMaxCalls,
			MaxCallsPerInside: DefaultMaxCallsPerInside,
			GREIdle:           DefaultGREIdle,
			ControlIdle:       DefaultControlIdle,
			SetupTimeout:      DefaultSetupTimeout,
			CloseLinger:       DefaultCloseLinger,
			RestoreGrace:      DefaultRestoreGrace,
			SnapshotInterval:  DefaultSnapshotInterval,
			LogLevel:          "info",
		},
		Queues:      1,
		RepairRules: true,
		GREPath:     GREPathAuto,
		BPFPinDir:   DefaultBPFPinDir,
		LocalGRE:    LocalGREDrop,
		MarkBit:     DefaultMarkBit,
		AdminSocket: DefaultAdminSocket,
		StateFile:   DefaultStateFile,
		HA:          HA{Prefix: DefaultHAPrefix, LeaseTTL: DefaultHALease},
		LogFormat:   "json",
	}
}

// Layout returns the queue numbering (N control queues from --queue, then N GRE/ICMP queues).
// Parse guarantees it fits in 16 bits.
func (c *Config) Layout() rules.Layout { return rules.Layout{First: c.Queue, N: uint16(c.Queues)} }

// Warnings returns advice about values that are valid but probably not what the operator meant,
// for main to log at start and on reload.
func (c *Config) Warnings() []string {
	var w []string
	if c.Subcommand != CmdRun {
		return nil
	}
	if c.ControlIdle < 2*time.Minute {
		w = append(w, fmt.Sprintf("control-idle %s is below 2m: PPTP peers send an echo only every 60s, idle but healthy control connections will be cut", fmtDuration(c.ControlIdle)))
	}
	if c.GREIdle < c.SetupTimeout {
		w = append(w, fmt.Sprintf("gre-idle %s is shorter than setup-timeout %s: calls may expire before their first data packet", fmtDuration(c.GREIdle), fmtDuration(c.SetupTimeout)))
	}
	if c.MaxCallsPerInside > c.MaxCalls {
		w = append(w, fmt.Sprintf("max-calls-per-inside %d is above max-calls %d and never applies", c.MaxCallsPerInside, c.MaxCalls))
	}
	return w
}
