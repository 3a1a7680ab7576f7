package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestErrors checks that every bad input is refused with a message that starts with its source.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		cmd  string // default run
		args []string
		env  []string
		file string // YAML; "--config FILE" is prepended to args when set
		want string // the error starts with this (FILE is the config file's path)
	}{
		// flags
		{name: "unknown flag", args: []string{"--max-cals", "3"}, want: "--max-cals: unknown flag"},
		{name: "flag of another subcommand", cmd: CmdRules, args: []string{"show", "--max-calls", "3"}, want: "--max-calls: not an option of rules"},
		{name: "missing value", args: []string{"--queue"}, want: "--queue: needs a value"},
		{name: "bad syntax", args: []string{"---queue=1"}, want: "---queue=1: bad flag syntax"},
		{name: "queue not a number", args: []string{"--queue", "one"}, want: `--queue: "one" is not a non-negative integer`},
		{name: "queue too big", args: []string{"--queue", "65536"}, want: `--queue: "65536" is out of range (0..65535)`},
		{name: "queue negative", args: []string{"--queue=-1"}, want: "--queue: "},
		{name: "queues zero", args: []string{"--queues", "0"}, want: "--queues: 0 is out of range (1..64)"},
		{name: "queues 65", args: []string{"--queues", "65"}, want: "--queues: 65 is out of range (1..64)"},
		{name: "queue range overflow", args: []string{"--queue", "65530", "--queues", "4"}, want: "--queue: queue 65530 with 4 queues needs queues up to 65537"},
		{name: "bool value", args: []string{"--fail-open=maybe"}, want: `--fail-open: "maybe" is not true or false`},
		{name: "gre-path", args: []string{"--gre-path", "nft"}, want: `--gre-path: "nft" is not one of auto, bpf, kernel, queue`},
		{name: "bpf-interfaces slash", args: []string{"--bpf-interfaces", "eth0/1"}, want: `--bpf-interfaces: "eth0/1" is not an interface name`},
		{name: "bpf-interfaces long", args: []string{"--bpf-interfaces", "averyveryverylongname"}, want: `--bpf-interfaces: "averyveryverylongname" is not an interface name`},
		{name: "local-gre", args: []string{"--local-gre", "allow"}, want: `--local-gre: "allow" is not one of drop, accept`},
		{name: "public-ip v6", args: []string{"--public-ip", "2001:db8::1"}, want: `--public-ip: "2001:db8::1" is not an IPv4 address`},
		{name: "public-ip mapped", args: []string{"--public-ip", "::ffff:192.0.2.1"}, want: "--public-ip: "},
		{name: "public-ip junk", args: []string{"--public-ip", "192.0.2.1,x"}, want: `--public-ip: "x" is not an IPv4 address`},
		{name: "public-ip zero", args: []string{"--public-ip", "0.0.0.0"}, want: "--public-ip: 0.0.0.0 cannot be a public address"},
		{name: "public-ip multicast", args: []string{"--public-ip", "224.0.0.1"}, want: "--public-ip: 224.0.0.1 cannot be a public address"},
		{name: "max-calls zero", args: []string{"--max-calls", "0"}, want: "--max-calls: 0 is out of range"},
		{name: "max-calls junk", args: []string{"--max-calls", "1e3"}, want: `--max-calls: "1e3" is not an integer`},
		{name: "per-inside zero", args: []string{"--max-calls-per-inside", "0"}, want: "--max-calls-per-inside: 0 is out of range"},
		{name: "duration no unit", args: []string{"--gre-idle", "300"}, want: `--gre-idle: "300" has no unit (write e.g. 300s or 300m)`},
		{name: "duration junk", args: []string{"--control-idle", "soon"}, want: `--control-idle: "soon" is not a duration`},
		{name: "duration too small", args: []string{"--setup-timeout", "10ms"}, want: "--setup-timeout: 10ms is below the minimum 1s"},
		{name: "linger negative", args: []string{"--close-linger", "-1s"}, want: "--close-linger: -1s is negative"},
		{name: "snapshot zero", args: []string{"--snapshot-interval", "0s"}, want: "--snapshot-interval: 0s is below the minimum 1s"},
		{name: "empty admin socket", args: []string{"--admin-socket", ""}, want: "--admin-socket: must not be empty"},
		{name: "empty state file", args: []string{"--state-file="}, want: "--state-file: must not be empty"},
		{name: "ha-etcd no port", args: []string{"--ha-etcd", "http://10.9.0.1"}, want: `--ha-etcd: "http://10.9.0.1": want http(s)://HOST:PORT`},
		{name: "ha-node slash", args: []string{"--ha-node", "a/b"}, want: `--ha-node: "a/b": want a name without '/' or spaces`},
		{name: "ha-prefix relative", args: []string{"--ha-prefix", "pptpgw/"}, want: `--ha-prefix: "pptpgw/": want a prefix starting and ending with '/'`},
		{name: "metrics-listen no port", args: []string{"--metrics-listen", "localhost"}, want: `--metrics-listen: "localhost" is not host:port`},
		{name: "metrics-listen bad port", args: []string{"--metrics-listen", ":http"}, want: `--metrics-listen: ":http" has a bad port`},
		{name: "log-level", args: []string{"--log-level", "verbose"}, want: `--log-level: "verbose" is not one of debug, info, warn, error`},
		{name: "log-format", args: []string{"--log-format", "text"}, want: `--log-format: "text" is not one of json, console`},
		{name: "positional on run", args: []string{"now"}, want: `run: unexpected argument "now"`},
		{name: "rules without action", cmd: CmdRules, want: "rules: missing action"},
		{name: "rules bad action", cmd: CmdRules, args: []string{"apply"}, want: `rules: action "apply" is not one of install, remove, show`},
		{name: "rules two actions", cmd: CmdRules, args: []string{"install", "remove"}, want: `rules: unexpected argument "remove" after install`},
		{name: "unknown subcommand", cmd: "serve", want: `unknown subcommand "serve"`},
		// environment
		{name: "env typo", env: []string{"PPTPGW_MAX_CALL=3"}, want: "PPTPGW_MAX_CALL: unknown variable"},
		{name: "env lower case", env: []string{"PPTPGW_max_calls=3"}, want: "PPTPGW_max_calls: unknown variable"},
		{name: "env bad value", env: []string{"PPTPGW_GRE_PATH=fast"}, want: `PPTPGW_GRE_PATH: "fast" is not one of auto, bpf, kernel, queue`},
		{name: "env list element", env: []string{"PPTPGW_PUBLIC_IP=192.0.2.1,bad"}, want: `PPTPGW_PUBLIC_IP: "bad" is not an IPv4 address`},
		{name: "env flag-only", cmd: CmdCalls, env: []string{"PPTPGW_JSON=1"}, want: "PPTPGW_JSON: --json is a command-line flag only"},
		{name: "env missing file", env: []string{"PPTPGW_CONFIG=/nonexistent/pptpgw.yaml"}, want: "config file /nonexistent/pptpgw.yaml: no such file or directory"},
		// config file
		{name: "file unknown key", file: "max-cals: 3\n", want: `config file FILE: key "max-cals": unknown`},
		{name: "file bad value", file: "queue: 1\nmax-calls: many\n", want: `config file FILE: key "max-calls": "many" is not an integer`},
		{name: "file duration number", file: "gre-idle: 300\n", want: `config file FILE: key "gre-idle": "300" has no unit`},
		{name: "file null", file: "max-calls:\n", want: `config file FILE: key "max-calls": line 1: has no value`},
		{name: "file list for scalar", file: "max-calls: [1, 2]\n", want: `config file FILE: key "max-calls": line 1: takes one value, not a list`},
		{name: "file mapping value", file: "public-ip: {a: 1}\n", want: `config file FILE: key "public-ip": line 1: must be a value or a list`},
		{name: "file nested list", file: "public-ip: [[192.0.2.1]]\n", want: `config file FILE: key "public-ip": line 1: list elements must be plain values`},
		{name: "file duplicate", file: "queue: 1\nqueue: 2\n", want: `config file FILE: key "queue": line 2: duplicate (first on line 1)`},
		{name: "file config key", file: "config: other.yaml\n", want: `config file FILE: key "config": not allowed in a config file`},
		{name: "file json key", cmd: CmdCalls, file: "json: true\n", want: `config file FILE: key "json": not allowed in a config file`},
		{name: "file not a mapping", file: "- queue\n", want: "config file FILE: line 1: the top level must be a mapping"},
		{name: "file scalar", file: "max-calls\n", want: "config file FILE: line 1: the top level must be a mapping"},
		{name: "file syntax", file: "queue: [1\n", want: "config file FILE: yaml: "},
		{name: "file bad public ip in list", file: "public-ip:\n  - 192.0.2.1\n  - 10.0.0.256\n", want: `config file FILE: key "public-ip": "10.0.0.256" is not an IPv4 address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := tt.cmd
			if cmd == "" {
				cmd = CmdRun
			}
			args, want := tt.args, tt.want
			if tt.file != "" {
				p := writeFile(t, tt.file)
				want = strings.ReplaceAll(want, "FILE", p)
				args = append([]string{"--config", p}, args...)
				if cmd == CmdRules {
					args = append(args, "show")
				}
			}
			c, err := Parse(cmd, args, tt.env)
			if err == nil {
				t.Fatalf("no error, config %+v", c)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error\n  %q\nwant prefix\n  %q", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestSubcommandSubsets checks that run and rules share a file and environment: rules ignores
// run's options there, and calls only takes what it needs.
func TestSubcommandSubsets(t *testing.T) {
	p := writeFile(t, "queue: 5\nqueues: 2\nfail-open: true\nmark-bit: 0x20\nmax-calls: 10\npublic-ip: [192.0.2.1]\nadmin-socket: /tmp/x.sock\n")
	env := []string{"PPTPGW_CONFIG=" + p, "PPTPGW_GRE_IDLE=1m", "PPTPGW_E2E_BINARY=/tmp/pptpgw", "PPTPGW_TEST_X=1", "OTHER=1"}

	r, err := Parse(CmdRules, []string{"install", "--queues", "3"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != RulesInstall || r.Queue != 5 || r.Queues != 3 || !r.FailOpen || r.MarkBit != 0x20 {
		t.Errorf("rules config %+v", r)
	}
	if r.MaxCalls != DefaultMaxCalls || r.GREIdle != DefaultGREIdle || r.PublicIPs != nil || r.AdminSocket != DefaultAdminSocket {
		t.Errorf("rules took run-only options: %+v", r)
	}
	var names []string
	for _, s := range r.Effective() {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "config queue queues fail-open bpf-pin-dir mark-bit" {
		t.Errorf("rules options %q", got)
	}

	c, err := Parse(CmdCalls, []string{"--json"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if !c.JSON || c.AdminSocket != "/tmp/x.sock" {
		t.Errorf("calls config %+v", c)
	}
	// "--" ends the flags; what follows is positional.
	if _, err := Parse(CmdRules, []string{"--", "--queue"}, nil); err == nil || !strings.Contains(err.Error(), `"--queue" is not one of`) {
		t.Errorf("after --: %v", err)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pptpgw.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("max-calls: 100\nmax-calls-per-inside: 5\ngre-idle: 1m\nqueue: 1\nlog-level: info\n")
	env := []string{"PPTPGW_SETUP_TIMEOUT=30s"}
	c, err := Parse(CmdRun, []string{"--config", p, "--max-calls-per-inside", "7"}, env)
	if err != nil {
		t.Fatal(err)
	}

	write("max-calls: 200\nmax-calls-per-inside: 9\ngre-idle: 2m\nqueue: 2\npublic-ip: [192.0.2.1]\nlog-level: debug\n")
	next, restart, err := c.Reload(env)
	if err != nil {
		t.Fatal(err)
	}
	want := Reloadable{MaxCalls: 200, MaxCallsPerInside: 7 /* the flag still wins */, GREIdle: 2 * time.Minute,
		ControlIdle: DefaultControlIdle, SetupTimeout: 30 * time.Second, CloseLinger: DefaultCloseLinger,
		RestoreGrace: DefaultRestoreGrace, SnapshotInterval: DefaultSnapshotInterval, LogLevel: "debug"}
	if next.Reloadable != want {
		t.Errorf("reloaded %+v\nwant      %+v", next.Reloadable, want)
	}
	if next.Queue != 1 || next.PublicIPs != nil {
		t.Errorf("a non-reloadable option changed: queue %d public-ip %v", next.Queue, next.PublicIPs)
	}
	if got := strings.Join(restart, " "); got != "queue public-ip" {
		t.Errorf("need restart %q, want %q", got, "queue public-ip")
	}
	if c.MaxCalls != 100 {
		t.Errorf("Reload changed the old config: %d", c.MaxCalls)
	}

	write("max-calls: lots\n")
	if _, _, err := next.Reload(env); err == nil || !strings.HasPrefix(err.Error(), "reload: config file ") {
		t.Errorf("broken file on reload: %v", err)
	}
}

func TestWarnings(t *testing.T) {
	c, err := Parse(CmdRun, []string{"--control-idle", "90s", "--gre-idle", "30s", "--max-calls", "10", "--max-calls-per-inside", "20"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"control-idle 1m30s is below 2m", "gre-idle 30s is shorter than setup-timeout 1m", "max-calls-per-inside 20 is above max-calls 10"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}
