package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// from says which sources may set an option.
type from uint8

const (
	fromFlag from = 1 << iota
	fromEnv
	fromFile

	fromAll = fromFlag | fromEnv | fromFile
)

// option is one configuration key: its flag name, which subcommands take it, and how its text
// is parsed into a Config. The same table drives flags, YAML keys, PPTPGW_ variables, usage and
// Diff, so the sources cannot drift apart.
type option struct {
	name       string
	arg        string // placeholder in usage ("N", "D"); "" for a boolean flag
	usage      string
	cmds       []string
	from       from
	list       bool // repeatable flag / YAML list / comma-separated variable
	reloadable bool
	// set parses one value (one element for a list option) into c.
	set func(c *Config, v string) error
	// reset empties a list option before a source sets it, so a source replaces the list.
	reset func(c *Config)
	// get renders the current value the way a user would write it.
	get func(c *Config) string
}

var (
	allRun        = []string{CmdRun}
	runCheck      = []string{CmdRun, CmdCheck}
	runRules      = []string{CmdRun, CmdRules, CmdCheck} // check expects the rules run and rules use
	runAdmin      = []string{CmdRun, CmdCalls, CmdStats, CmdEvents, CmdHealth, CmdCheck}
	withConfig    = []string{CmdRun, CmdRules, CmdCalls, CmdStats, CmdHealth, CmdCheck, CmdEvents}
	printCommands = []string{CmdCalls, CmdStats, CmdHealth, CmdCheck, CmdEvents}
)

// options is the table of every option, in usage order.
var options = []*option{
	{name: "config", arg: "FILE", usage: "YAML file whose keys are these flag names", cmds: withConfig, from: fromFlag | fromEnv,
		set: func(c *Config, v string) error { c.ConfigFile = v; return nil },
		get: func(c *Config) string { return c.ConfigFile }},
	{name: "queue", arg: "N", usage: "first NFQUEUE number; control uses N..N+K-1, GRE and ICMP N+K..N+2K-1", cmds: runRules, from: fromAll,
		set: func(c *Config, v string) error { n, err := parseUint(v, 16); c.Queue = uint16(n); return err },
		get: func(c *Config) string { return strconv.Itoa(int(c.Queue)) }},
	{name: "queues", arg: "K", usage: "number of control queues (1..64), as many GRE queues", cmds: runRules, from: fromAll,
		set: func(c *Config, v string) error {
			n, err := parseIntRange(v, 1, MaxQueues)
			c.Queues = n
			return err
		},
		get: func(c *Config) string { return strconv.Itoa(c.Queues) }},
	{name: "install-rules", usage: "install missing iptables rules at start, remove them at exit", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) { c.InstallRules, err = parseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(c.InstallRules) }},
	{name: "repair-rules", usage: "every 5s, put back rules a firewall reload removed or changed (false: only report them)", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) { c.RepairRules, err = parseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(c.RepairRules) }},
	{name: "fail-open", usage: "let control traffic bypass the queues while the daemon is down", cmds: runRules, from: fromAll,
		set: func(c *Config, v string) (err error) { c.FailOpen, err = parseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(c.FailOpen) }},
	{name: "force", usage: "start even though the kernel's PPTP helper is attached", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) { c.Force, err = parseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(c.Force) }},
	{name: "gre-path", arg: "auto|bpf|kernel|queue", usage: "who rewrites established calls' GRE: tc eBPF programs (bpf), nf_tables maps (kernel), the queues (queue), or the first of bpf, kernel that works (auto)", cmds: runCheck, from: fromAll,
		set: func(c *Config, v string) (err error) {
			c.GREPath, err = parseEnum(v, GREPathAuto, GREPathBPF, GREPathKernel, GREPathQueue)
			return err
		},
		get: func(c *Config) string { return c.GREPath }},
	{name: "bpf-interfaces", arg: "IFACE", usage: "interfaces the bpf path attaches to, instead of those learnt from the control traffic (repeatable)", cmds: allRun, from: fromAll, list: true,
		set: func(c *Config, v string) error {
			name, err := parseIfName(v)
			if err == nil && !slices.Contains(c.BPFInterfaces, name) {
				c.BPFInterfaces = append(c.BPFInterfaces, name)
			}
			return err
		},
		reset: func(c *Config) { c.BPFInterfaces = nil },
		get:   func(c *Config) string { return strings.Join(c.BPFInterfaces, ",") }},
	{name: "bpf-pin-dir", arg: "PATH", usage: "bpffs directory where the bpf path's programs and maps stay across restarts", cmds: runRules, from: fromAll,
		set: func(c *Config, v string) (err error) { c.BPFPinDir, err = parseNonEmpty(v); return err },
		get: func(c *Config) string { return c.BPFPinDir }},
	{name: "public-ip", arg: "IP", usage: "public IPv4 address to use instead of the one learned from conntrack (repeatable)", cmds: allRun, from: fromAll, list: true,
		set: func(c *Config, v string) error {
			a, err := parsePublicIP(v)
			if err == nil && !slices.Contains(c.PublicIPs, a) {
				c.PublicIPs = append(c.PublicIPs, a)
			}
			return err
		},
		reset: func(c *Config) { c.PublicIPs = nil },
		get: func(c *Config) string {
			s := make([]string, len(c.PublicIPs))
			for i, a := range c.PublicIPs {
				s[i] = a.String()
			}
			return strings.Join(s, ",")
		}},
	{name: "local-gre", arg: "drop|accept", usage: "GRE v1 to or from a local address of no known call (the router's own calls are tracked; accept is deprecated)", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) {
			c.LocalGRE, err = parseEnum(v, LocalGREDrop, LocalGREAccept)
			return err
		},
		get: func(c *Config) string { return c.LocalGRE }},
	{name: "max-calls", arg: "N", usage: "calls in total", cmds: allRun, from: fromAll, reloadable: true,
		set: func(c *Config, v string) (err error) { c.MaxCalls, err = parseIntRange(v, 1, 1<<20); return err },
		get: func(c *Config) string { return strconv.Itoa(c.MaxCalls) }},
	{name: "max-calls-per-inside", arg: "N", usage: "calls per inside address", cmds: allRun, from: fromAll, reloadable: true,
		set: func(c *Config, v string) (err error) {
			c.MaxCallsPerInside, err = parseIntRange(v, 1, 1<<20)
			return err
		},
		get: func(c *Config) string { return strconv.Itoa(c.MaxCallsPerInside) }},
	optRequireAuth, optRequireMPPE, optAllowInside, optAllowPeer, // policy.go
	durationOption("gre-idle", "a call whose GRE is silent this long ends", time.Second,
		func(c *Config) *time.Duration { return &c.GREIdle }),
	durationOption("control-idle", "a control connection silent this long ends (keep well above PPTP's 60s echo)", time.Second,
		func(c *Config) *time.Duration { return &c.ControlIdle }),
	durationOption("setup-timeout", "a call not set up within this time ends", time.Second,
		func(c *Config) *time.Duration { return &c.SetupTimeout }),
	durationOption("close-linger", "how long a closed stream's rewrite records are kept for retransmissions", 0,
		func(c *Config) *time.Duration { return &c.CloseLinger }),
	durationOption("restore-grace", "a connection restored from the state file that conntrack does not know and that shows no segment this long ends", time.Second,
		func(c *Config) *time.Duration { return &c.RestoreGrace }),
	durationOption("snapshot-interval", "how often the state file is written", time.Second,
		func(c *Config) *time.Duration { return &c.SnapshotInterval }),
	{name: "mark-bit", arg: "HEX", usage: "packet mark bit set on translated GRE (one bit, e.g. 0x10000000)", cmds: runRules, from: fromAll,
		set: func(c *Config, v string) (err error) { c.MarkBit, err = parseMarkBit(v); return err },
		get: func(c *Config) string { return fmt.Sprintf("%#08x", c.MarkBit) }},
	{name: "admin-socket", arg: "PATH", usage: "unix socket of the admin API", cmds: runAdmin, from: fromAll,
		set: func(c *Config, v string) (err error) { c.AdminSocket, err = parseNonEmpty(v); return err },
		get: func(c *Config) string { return c.AdminSocket }},
	{name: "admin-group", arg: "NAME", usage: "group that may use the admin socket", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) error { c.AdminGroup = v; return nil },
		get: func(c *Config) string { return c.AdminGroup }},
	{name: "metrics-listen", arg: "ADDR", usage: "TCP address (host:port) serving /metrics only", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) { c.MetricsListen, err = parseListen(v); return err },
		get: func(c *Config) string { return c.MetricsListen }},
	{name: "state-file", arg: "PATH", usage: "where calls survive a restart", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) { c.StateFile, err = parseNonEmpty(v); return err },
		get: func(c *Config) string { return c.StateFile }},
	optHAEtcd, optHANode, optHAPrefix, optHACA, optHACert, optHAKey, optHALease, // ha.go
	{name: "log-level", arg: "L", usage: "debug, info, warn or error", cmds: allRun, from: fromAll, reloadable: true,
		set: func(c *Config, v string) (err error) {
			c.LogLevel, err = parseEnum(v, "debug", "info", "warn", "error")
			return err
		},
		get: func(c *Config) string { return c.LogLevel }},
	{name: "log-format", arg: "json|console", usage: "json for machines, console for people", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) { c.LogFormat, err = parseEnum(v, "json", "console"); return err },
		get: func(c *Config) string { return c.LogFormat }},
	{name: "json", usage: "print JSON instead of a table", cmds: printCommands, from: fromFlag,
		set: func(c *Config, v string) (err error) { c.JSON, err = parseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(c.JSON) }},
	optInside, optPeer, optType, optState, // filter.go
	{name: "live", usage: "fail only for what a restart cures (a liveness probe); else for any problem (readiness)", cmds: []string{CmdHealth}, from: fromFlag,
		set: func(c *Config, v string) (err error) { c.Live, err = parseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(c.Live) }},
}

// durationOption builds a reloadable duration option of run with a lower bound.
func durationOption(name, usage string, min time.Duration, field func(*Config) *time.Duration) *option {
	return &option{name: name, arg: "D", usage: usage, cmds: allRun, from: fromAll, reloadable: true,
		set: func(c *Config, v string) (err error) { *field(c), err = parseDuration(v, min); return err },
		get: func(c *Config) string { return fmtDuration(*field(c)) }}
}

// lookup returns the option called name, or nil.
func lookup(name string) *option {
	for _, o := range options {
		if o.name == name {
			return o
		}
	}
	return nil
}

// takes reports whether subcommand cmd takes option o.
func (o *option) takes(cmd string) bool { return slices.Contains(o.cmds, cmd) }

// envName is the PPTPGW_ variable of option name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}
