package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpConfig = []cmp.Option{
	cmpopts.IgnoreUnexported(Config{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

// writeFile writes a config file into a fresh temp dir and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pptpgw.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func TestDefaults(t *testing.T) {
	c, err := Parse(CmdRun, nil, []string{"PATH=/bin", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Subcommand = CmdRun
	if d := cmp.Diff(&want, c, cmpConfig...); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if want.Queues != 1 || want.MarkBit != 0x10000000 || want.GREPath != "auto" || want.LocalGRE != "drop" ||
		want.AdminSocket != "/run/pptpgw/admin.sock" || want.StateFile != "/var/lib/pptpgw/state.json" ||
		want.LogLevel != "info" || want.LogFormat != "json" || want.FailOpen {
		t.Errorf("defaults differ from DESIGN.md: %+v", want)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("defaults warn: %q", w)
	}
}

func TestPrecedence(t *testing.T) {
	file := "max-calls: 100\ngre-idle: 1m\npublic-ip: [192.0.2.1, 192.0.2.2]\nlog-level: warn\n"
	tests := []struct {
		name     string
		args     []string
		env      []string
		file     bool
		maxCalls int
		greIdle  time.Duration
		public   []netip.Addr
		level    string
		source   string // of max-calls
	}{
		{name: "defaults", maxCalls: 4096, greIdle: 5 * time.Minute, level: "info", source: "default"},
		{name: "file", file: true, maxCalls: 100, greIdle: time.Minute, public: addrs("192.0.2.1", "192.0.2.2"), level: "warn",
			source: `key "max-calls"`},
		{name: "env over file", file: true, env: []string{"PPTPGW_MAX_CALLS=200", "PPTPGW_PUBLIC_IP=198.51.100.7"},
			maxCalls: 200, greIdle: time.Minute, public: addrs("198.51.100.7"), level: "warn", source: "PPTPGW_MAX_CALLS"},
		{name: "flag over env over file", file: true, env: []string{"PPTPGW_MAX_CALLS=200", "PPTPGW_LOG_LEVEL=debug"},
			args:     []string{"--max-calls", "300", "--public-ip", "203.0.113.1", "-public-ip=203.0.113.2"},
			maxCalls: 300, greIdle: time.Minute, public: addrs("203.0.113.1", "203.0.113.2"), level: "debug", source: "--max-calls"},
		{name: "last flag wins", args: []string{"--max-calls=1", "--max-calls=2"}, maxCalls: 2, greIdle: 5 * time.Minute,
			level: "info", source: "--max-calls"},
		{name: "empty env clears file list", file: true, env: []string{"PPTPGW_PUBLIC_IP="},
			maxCalls: 100, greIdle: time.Minute, level: "warn", source: `key "max-calls"`},
		{name: "config path from env", file: true, maxCalls: 100, greIdle: time.Minute,
			public: addrs("192.0.2.1", "192.0.2.2"), level: "warn", source: `key "max-calls"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, env := tt.args, tt.env
			if tt.file {
				p := writeFile(t, file)
				if tt.name == "config path from env" {
					env = append(env, "PPTPGW_CONFIG="+p)
				} else {
					args = append([]string{"--config", p}, args...)
				}
			}
			c, err := Parse(CmdRun, args, env)
			if err != nil {
				t.Fatal(err)
			}
			if c.MaxCalls != tt.maxCalls || c.GREIdle != tt.greIdle || c.LogLevel != tt.level {
				t.Errorf("max-calls %d gre-idle %s log-level %s, want %d %s %s", c.MaxCalls, c.GREIdle, c.LogLevel, tt.maxCalls, tt.greIdle, tt.level)
			}
			if d := cmp.Diff(tt.public, c.PublicIPs, cmpConfig...); d != "" {
				t.Errorf("public-ip (-want +got):\n%s", d)
			}
			var src string
			for _, s := range c.Effective() {
				if s.Name == "max-calls" {
					src = s.Source
				}
			}
			if !strings.Contains(src, tt.source) {
				t.Errorf("max-calls source %q, want it to contain %q", src, tt.source)
			}
		})
	}
}

func TestAllOptions(t *testing.T) {
	p := writeFile(t, `
queue: 10
queues: 4
install-rules: true
repair-rules: false
fail-open: true
force: true
gre-path: kernel
bpf-interfaces: [eth0, lan0]
bpf-pin-dir: /sys/fs/bpf/gw1
public-ip: 192.0.2.1, 192.0.2.2
local-gre: accept
max-calls: 1000
max-calls-per-inside: 8
gre-idle: 10m
control-idle: 1h
setup-timeout: 2m
close-linger: 0s
restore-grace: 2m
snapshot-interval: 30s
mark-bit: 0x100
admin-socket: /tmp/a.sock
admin-group: pptpgw
metrics-listen: "127.0.0.1:9747"
state-file: /tmp/state.json
ha-etcd: [http://10.9.0.1:2379, "https://10.9.0.2:2379,https://10.9.0.3:2379"]
ha-node: gw-a
ha-prefix: /edge/
ha-etcd-ca: /etc/pptpgw/etcd-ca.pem
ha-etcd-cert: /etc/pptpgw/etcd.pem
ha-etcd-key: /etc/pptpgw/etcd.key
ha-lease: 45s
log-level: debug
log-format: console
`)
	c, err := Parse(CmdRun, []string{"--config", p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Reloadable: Reloadable{MaxCalls: 1000, MaxCallsPerInside: 8, GREIdle: 10 * time.Minute, ControlIdle: time.Hour,
			SetupTimeout: 2 * time.Minute, CloseLinger: 0, RestoreGrace: 2 * time.Minute, SnapshotInterval: 30 * time.Second, LogLevel: "debug"},
		Subcommand: CmdRun, ConfigFile: p, Queue: 10, Queues: 4, InstallRules: true, FailOpen: true, Force: true,
		GREPath: "kernel", BPFInterfaces: []string{"eth0", "lan0"}, BPFPinDir: "/sys/fs/bpf/gw1", PublicIPs: addrs("192.0.2.1", "192.0.2.2"), LocalGRE: "accept", MarkBit: 0x100,
		AdminSocket: "/tmp/a.sock", AdminGroup: "pptpgw", MetricsListen: "127.0.0.1:9747", StateFile: "/tmp/state.json",
		HA: HA{Etcd: []string{"http://10.9.0.1:2379", "https://10.9.0.2:2379", "https://10.9.0.3:2379"}, Node: "gw-a", Prefix: "/edge/",
			CA: "/etc/pptpgw/etcd-ca.pem", Cert: "/etc/pptpgw/etcd.pem", Key: "/etc/pptpgw/etcd.key", LeaseTTL: 45 * time.Second},
		LogFormat: "console",
	}
	if d := cmp.Diff(want, c, cmpConfig...); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if f, l := c.Layout().Control(); f != 10 || l != 4 {
		t.Errorf("control queues from %d, %d of them; want 10, 4", f, l)
	}
	if f, l := c.Layout().GRE(); f != 14 || l != 4 {
		t.Errorf("GRE queues from %d, %d of them; want 14, 4", f, l)
	}
}

// TestEmptyFiles checks that a file with nothing set is the defaults, not an error.
func TestEmptyFiles(t *testing.T) {
	for _, body := range []string{"", "# nothing yet\n", "---\n", "---\n...\n", "{}\n"} {
		c, err := Parse(CmdRun, []string{"--config", writeFile(t, body)}, nil)
		if err != nil {
			t.Errorf("%q: %v", body, err)
			continue
		}
		if c.MaxCalls != DefaultMaxCalls || c.GREIdle != DefaultGREIdle {
			t.Errorf("%q: not the defaults: %+v", body, c)
		}
	}
}

func TestLists(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  string
		args []string
		want []netip.Addr
	}{
		{name: "repeated flags", args: []string{"--public-ip", "192.0.2.1", "--public-ip", "192.0.2.2"}, want: addrs("192.0.2.1", "192.0.2.2")},
		{name: "comma flag", args: []string{"--public-ip=192.0.2.1,192.0.2.2"}, want: addrs("192.0.2.1", "192.0.2.2")},
		{name: "env with spaces", env: " 192.0.2.1 , 192.0.2.2 ,", want: addrs("192.0.2.1", "192.0.2.2")},
		{name: "duplicates dropped", args: []string{"--public-ip=192.0.2.1,192.0.2.1", "--public-ip", "192.0.2.1"}, want: addrs("192.0.2.1")},
		{name: "yaml block list", file: "public-ip:\n  - 192.0.2.1\n  - 192.0.2.2\n", want: addrs("192.0.2.1", "192.0.2.2")},
		{name: "yaml scalar", file: "public-ip: 192.0.2.3\n", want: addrs("192.0.2.3")},
		{name: "yaml empty list", file: "public-ip: []\n", want: nil},
		{name: "flag replaces file", file: "public-ip: [192.0.2.1]\n", args: []string{"--public-ip", "192.0.2.9"}, want: addrs("192.0.2.9")},
		{name: "empty flag clears", file: "public-ip: [192.0.2.1]\n", args: []string{"--public-ip="}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			var env []string
			if tt.env != "" {
				env = []string{"PPTPGW_PUBLIC_IP=" + tt.env}
			}
			c, err := Parse(CmdRun, args, env)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, c.PublicIPs, cmpConfig...); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestMarkBit(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr string
	}{
		{in: "0x10000000", want: 0x10000000},
		{in: "0X00000001", want: 1},
		{in: "10000000", want: 0x10000000}, // HEX without the prefix
		{in: "0x80000000", want: 0x80000000},
		{in: "0x3", wantErr: "0x3 has 2 bits set, want exactly one"},
		{in: "0x0", wantErr: "0x0 has 0 bits set"},
		{in: "256", wantErr: "0x256 has 5 bits set"},
		{in: "0x100000000", wantErr: "wider than 32 bits"},
		{in: "0xfoo", wantErr: "not a hex number"},
		{in: "0x", wantErr: "not a hex number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Parse(CmdRules, []string{"show", "--mark-bit", tt.in}, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "--mark-bit: ") {
					t.Fatalf("error %v, want --mark-bit: ...%s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MarkBit != tt.want {
				t.Errorf("mark %#x, want %#x", c.MarkBit, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		if _, err := Parse(CmdRun, []string{arg}, nil); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: error %v, want flag.ErrHelp", arg, err)
		}
	}
	u := Usage(CmdRun)
	for _, want := range []string{"--max-calls N", "(default 4096)", "[PPTPGW_MAX_CALLS]", "--mark-bit HEX", "(default 0x10000000)", "--fail-open ", "(default 5m)", "(default 1m)"} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %q:\n%s", want, u)
		}
	}
	if strings.Contains(Usage(CmdRules), "--max-calls") {
		t.Error("rules usage lists --max-calls")
	}
}

// TestRepairRules: --repair-rules is on by default and turned off by a
// flag, the environment or the file.
func TestRepairRules(t *testing.T) {
	for _, tt := range []struct {
		args, env []string
		want      bool
	}{
		{nil, nil, true},
		{[]string{"--repair-rules=false"}, nil, false},
		{nil, []string{"PPTPGW_REPAIR_RULES=false"}, false},
		{[]string{"--config", writeFile(t, "repair-rules: false\n")}, nil, false},
		{[]string{"--repair-rules"}, []string{"PPTPGW_REPAIR_RULES=false"}, true},
	} {
		c, err := Parse(CmdRun, tt.args, tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if c.RepairRules != tt.want {
			t.Errorf("args %q env %q: RepairRules %v, want %v", tt.args, tt.env, c.RepairRules, tt.want)
		}
	}
}
