package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// The OpenWrt package (openwrt/) is checked here without a router: the UCI translation runs
// under the shells a router has (busybox ash) or the nearest one (dash), with functions.sh's
// config_load semantics stood in for, and its YAML goes through pptpgw's own configuration
// code; the init script's start_service runs with procd and pptpgw stood in for.

func openwrtPath(elem ...string) string {
	return filepath.Join(append([]string{"..", "..", "openwrt"}, elem...)...)
}

// fakeFunctions stands in for /lib/functions.sh as far as the package uses it: /etc/config
// files are shell (config, option, list), option_cb and list_cb are called, config_get reads
// an option (a list's items joined by spaces), config_get_bool maps UCI's spellings.
const fakeFunctions = `
config() { CONFIG_SECTION=$2; }
option() { n=$1; shift; eval "CONFIG_${CONFIG_SECTION}_$n=\$*"; option_cb "$n" "$*"; }
list() {
	n=$1; shift
	eval "cur=\${CONFIG_${CONFIG_SECTION}_$n}"
	eval "CONFIG_${CONFIG_SECTION}_$n=\"\${cur:+\$cur }\$*\""
	list_cb "$n" "$*"
}
option_cb() { :; }
list_cb() { :; }
config_load() { . "$UCI_CONFIG_DIR/$1"; }
config_get() { eval "$1=\${CONFIG_$2_$3:-\$4}"; }
config_get_bool() {
	config_get _b "$2" "$3" "$4"
	case "$_b" in 1|on|true|yes|enabled) _b=1 ;; *) _b=0 ;; esac
	eval "$1=\$_b"
}
`

// shells returns the POSIX shells to run the scripts under.
func shells(t *testing.T) [][]string {
	var out [][]string
	if p, err := exec.LookPath("busybox"); err == nil {
		out = append(out, []string{p, "sh"})
	}
	if p, err := exec.LookPath("dash"); err == nil {
		out = append(out, []string{p})
	}
	if len(out) == 0 {
		t.Skip("neither busybox nor dash installed")
	}
	return out
}

// uciYAML writes uci as /etc/config/pptpgw, runs pptpgw_yaml under sh and returns the
// configuration file it wrote for which ("all" or "restart") and the unknown options.
func uciYAML(t *testing.T, sh []string, uci, which string) (path, unknown string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pptpgw"), []byte(uci), 0o644); err != nil {
		t.Fatal(err)
	}
	lib, _ := filepath.Abs(openwrtPath("files", "pptpgw-uci.sh"))
	opts, _ := filepath.Abs(openwrtPath("files", "pptpgw.options"))
	path = filepath.Join(dir, "pptpgw.yaml")
	script := fakeFunctions + `
UCI_CONFIG_DIR=` + dir + `
PPTPGW_OPTIONS=` + opts + `
. ` + lib + `
pptpgw_load
echo "$PPTPGW_UNKNOWN"
pptpgw_yaml main ` + which + ` >` + path
	out, err := exec.Command(sh[0], append(sh[1:], "-c", script)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", sh, err, out)
	}
	return path, strings.TrimSpace(string(out))
}

func effective(c *config.Config) map[string]config.Setting {
	m := map[string]config.Setting{}
	for _, s := range c.Effective() {
		m[s.Name] = s
	}
	return m
}

// TestOpenWrtUCI: UCI options reach pptpgw as the same values, bools in UCI's spellings, lists
// as list or as one option; restart holds only what SIGHUP cannot change; misspelt options are
// reported and bad values rejected by pptpgw naming the key.
func TestOpenWrtUCI(t *testing.T) {
	const uci = `
config pptpgw 'main'
	option enabled '1'
	option fail_open 'yes'
	option repair_rules 'off'
	option queue '4'
	option max_calls '100'
	option gre_idle '90s'
	option admin_group 'o''brien'
	list public_ip '198.51.100.1'
	list public_ip '198.51.100.2'
	option allow_inside '192.168.1.0/24'
	list require_auth 'mschapv2'
	list require_auth 'eap'
	option log_format 'console'
	option max_cals '7'
`
	for _, sh := range shells(t) {
		path, unknown := uciYAML(t, sh, strings.ReplaceAll(uci, "o''brien", `o'"'"'brien`), "all")
		if unknown != "max_cals" {
			t.Errorf("%v: unknown options %q, want max_cals", sh, unknown)
		}
		c, err := config.Parse(config.CmdRun, []string{"--config", path}, nil)
		if err != nil {
			b, _ := os.ReadFile(path)
			t.Fatalf("%v: %v\n%s", sh, err, b)
		}
		got := effective(c)
		for name, want := range map[string]string{
			"fail-open": "true", "repair-rules": "false", "queue": "4", "max-calls": "100", "gre-idle": "1m30s",
			"admin-group": "o'brien", "public-ip": "198.51.100.1,198.51.100.2", "allow-inside": "192.168.1.0/24",
			"require-auth": "mschapv2,eap", "log-format": "console", "max-calls-per-inside": "64",
		} {
			if got[name].Value != want {
				t.Errorf("%v: %s = %q, want %q", sh, name, got[name].Value, want)
			}
		}
		if got["max-calls"].Source == "default" || got["max-calls-per-inside"].Source != "default" {
			t.Errorf("%v: sources %+v", sh, got)
		}
		if _, err := config.Parse(config.CmdRules, []string{"install", "--config", path}, nil); err != nil {
			t.Errorf("%v: rules install --config: %v", sh, err)
		}

		restart, _ := uciYAML(t, sh, uci, "restart")
		b, _ := os.ReadFile(restart)
		for _, o := range config.Options() {
			has := regexp.MustCompile(`(?m)^` + o.Name + `:`).Match(b)
			set := strings.Contains(uci, "option "+strings.ReplaceAll(o.Name, "-", "_")+" ") ||
				strings.Contains(uci, "list "+strings.ReplaceAll(o.Name, "-", "_")+" ")
			if has != (set && !o.Reloadable) {
				t.Errorf("%v: restart file has %s: %v (reloadable %v)\n%s", sh, o.Name, has, o.Reloadable, b)
			}
		}

		bad, _ := uciYAML(t, sh, "config pptpgw main\n\toption fail_open maybe\n", "all")
		if _, err := config.Parse(config.CmdRun, []string{"--config", bad}, nil); err == nil ||
			!strings.Contains(err.Error(), `key "fail-open"`) {
			t.Errorf("%v: fail_open maybe: %v", sh, err)
		}
	}
}

// TestOpenWrtUCIEveryOption: each option of the generated list, set in UCI to its default,
// reaches pptpgw from the file with that value; and the list is every file option of run or
// rules.
func TestOpenWrtUCIEveryOption(t *testing.T) {
	def := effective(mustParse(t, config.CmdRun))
	var uci strings.Builder
	uci.WriteString("config pptpgw 'main'\n")
	var listed []string
	b, err := os.ReadFile(openwrtPath("files", "pptpgw.options"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != strings.ReplaceAll(f[1], "-", "_") {
			t.Errorf("UCI name %s for %s", f[0], f[1])
		}
		f = f[1:]
		listed = append(listed, f[0])
		v := def[f[0]].Value
		if f[1] == "bool" {
			v = map[string]string{"true": "1", "false": "0"}[v]
		}
		if v != "" {
			uci.WriteString("\toption " + strings.ReplaceAll(f[0], "-", "_") + " '" + v + "'\n")
		}
	}
	var want []string
	for _, o := range config.Options() {
		if o.File && (slices.Contains(o.Commands, config.CmdRun) || slices.Contains(o.Commands, config.CmdRules)) {
			want = append(want, o.Name)
		}
	}
	if !slices.Equal(listed, want) {
		t.Errorf("options list %v, want %v", listed, want)
	}
	for _, sh := range shells(t) {
		path, unknown := uciYAML(t, sh, uci.String(), "all")
		if unknown != "" {
			t.Errorf("%v: unknown %q", sh, unknown)
		}
		c, err := config.Parse(config.CmdRun, []string{"--config", path}, nil)
		if err != nil {
			t.Fatalf("%v: %v", sh, err)
		}
		for name, s := range effective(c) {
			if def[name].Value != "" && name != "config" && (s.Value != def[name].Value || !strings.HasPrefix(s.Source, "config file")) {
				t.Errorf("%v: %s = %q from %s, want %q from the file", sh, name, s.Value, s.Source, def[name].Value)
			}
		}
	}
}

func mustParse(t *testing.T, cmd string, args ...string) *config.Config {
	t.Helper()
	c, err := config.Parse(cmd, args, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// initRun runs the init script's start_service and service_triggers under sh with procd,
// logger and pptpgw stood in for; pptpgw answers `rules install` with mismatch first when
// asked to. It returns what they were called with, one call a line.
func initRun(t *testing.T, sh []string, uci string, mismatch bool) (calls string, dir string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pptpgw"), []byte(uci), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "fake-pptpgw")
	fake := "#!/bin/sh\necho \"pptpgw $*\" >>" + dir + "/calls\n"
	if mismatch {
		fake += "if [ \"$1 $2\" = 'rules install' ] && [ ! -e " + dir + "/once ]; then touch " + dir + "/once\n" +
			"echo 'pptpgw rules: installed pptpgw rules differ from the configuration: queue' >&2; exit 1; fi\n"
	}
	if err := os.WriteFile(prog, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(openwrtPath("files", "pptpgw.init"))
	if err != nil {
		t.Fatal(err)
	}
	lib, _ := filepath.Abs(openwrtPath("files", "pptpgw-uci.sh"))
	opts, _ := filepath.Abs(openwrtPath("files", "pptpgw.options"))
	init := strings.NewReplacer("/usr/share/pptpgw/uci.sh", lib, "PROG=/usr/bin/pptpgw", "PROG="+prog,
		"/var/etc", dir).Replace(string(b))
	if err := os.WriteFile(filepath.Join(dir, "init"), []byte(init), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fakeFunctions + `
log() { echo "$*" >>` + dir + `/calls; }
procd_open_instance() { log open; }
procd_set_param() { log "param $*"; }
procd_close_instance() { log close; }
procd_add_reload_trigger() { log "trigger $*"; }
logger() { log "logger $*"; while read -r l; do log "  $l"; done; }
UCI_CONFIG_DIR=` + dir + `
PPTPGW_OPTIONS=` + opts + `
. ` + dir + `/init
start_service
service_triggers`
	if out, err := exec.Command(sh[0], append(sh[1:], "-c", script)...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", sh, err, out)
	}
	c, _ := os.ReadFile(filepath.Join(dir, "calls"))
	return strings.ReplaceAll(strings.ReplaceAll(string(c), prog, "PROG"), dir, "DIR"), dir
}

// TestOpenWrtInit: start_service writes the configuration, installs the rules (replacing
// those of an earlier configuration), and hands procd the daemon with SIGHUP for reload and
// the restart-only options' file to watch; nothing runs while disabled.
func TestOpenWrtInit(t *testing.T) {
	shipped, err := os.ReadFile(openwrtPath("files", "pptpgw.config"))
	if err != nil {
		t.Fatal(err)
	}
	enabled := strings.Replace(string(shipped), "option enabled '0'", "option enabled '1'", 1)
	daemon := `open
param command PROG run --config DIR/pptpgw.yaml
param file DIR/pptpgw.restart
param reload_signal HUP
param respawn 3600 5 5
param term_timeout 15
param stdout 1
param stderr 1
close
trigger pptpgw
`
	for _, sh := range shells(t) {
		calls, dir := initRun(t, sh, enabled, false)
		if want := "pptpgw rules install --config DIR/pptpgw.yaml\n" + daemon; calls != want {
			t.Errorf("%v: calls\n%s\nwant\n%s", sh, calls, want)
		}
		c, err := config.Parse(config.CmdRun, []string{"--config", filepath.Join(dir, "pptpgw.yaml")}, nil)
		if err != nil {
			t.Fatalf("%v: the shipped /etc/config/pptpgw: %v", sh, err)
		}
		if c.LogFormat != "console" || c.GREPath != config.GREPathAuto || c.MaxCalls != config.DefaultMaxCalls {
			t.Errorf("%v: shipped config gave %+v", sh, effective(c))
		}

		calls, _ = initRun(t, sh, enabled, true)
		want := "pptpgw rules install --config DIR/pptpgw.yaml\n" +
			"logger -t pptpgw replacing the rules of an earlier configuration: pptpgw rules: installed pptpgw rules differ from the configuration: queue\n" +
			"pptpgw rules remove\npptpgw rules install --config DIR/pptpgw.yaml\n" + daemon
		if calls != want {
			t.Errorf("%v: after a queue change, calls\n%s\nwant\n%s", sh, calls, want)
		}

		if calls, _ = initRun(t, sh, string(shipped), false); calls != "trigger pptpgw\n" {
			t.Errorf("%v: disabled, calls\n%s", sh, calls)
		}
	}
}

// TestOpenWrtShellcheck: the package's shell scripts pass shellcheck.
func TestOpenWrtShellcheck(t *testing.T) {
	sc := tool(t, "shellcheck")
	files, _ := filepath.Glob(openwrtPath("files", "*"))
	var scripts []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && (strings.HasPrefix(string(b), "#!") || strings.HasSuffix(f, ".sh")) {
			scripts = append(scripts, f)
		}
	}
	if len(scripts) < 4 {
		t.Fatalf("scripts %v", scripts)
	}
	if out, err := exec.Command(sc, append([]string{"-x"}, scripts...)...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestOpenWrtMakefile checks the package Makefile's structure against the feed's conventions
// and this repository: the Go package it builds, the version it stamps, the license, the
// dependencies the rules need, and that it installs every file in openwrt/files.
func TestOpenWrtMakefile(t *testing.T) {
	b, err := os.ReadFile(openwrtPath("Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	mk := string(b)
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+):=(.*)$`).FindAllStringSubmatch(mk, -1) {
		vars[m[1]] = strings.TrimSpace(m[2])
	}
	gomod, _ := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	module := strings.TrimPrefix(strings.SplitN(string(gomod), "\n", 2)[0], "module ")
	for k, want := range map[string]string{
		"PKG_NAME": "pptpgw", "GO_PKG": module, "GO_PKG_BUILD_PKG": "$(GO_PKG)/cmd/pptpgw",
		"GO_PKG_LDFLAGS_X": "main.version=v$(PKG_VERSION)", "PKG_LICENSE": "MIT", "PKG_LICENSE_FILES": "LICENSE",
		"PKG_BUILD_DEPENDS": "golang/host",
	} {
		if vars[k] != want {
			t.Errorf("%s:=%q, want %q", k, vars[k], want)
		}
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(vars["PKG_VERSION"]) {
		t.Errorf("PKG_VERSION %q", vars["PKG_VERSION"])
	}
	for _, want := range []string{
		"include $(TOPDIR)/rules.mk", "include $(INCLUDE_DIR)/package.mk", "include ../../lang/golang/golang-package.mk",
		"$(eval $(call GoBinPackage,pptpgw))", "$(eval $(call BuildPackage,pptpgw))",
		"$(GO_ARCH_DEPENDS)", "+iptables-nft", "+iptables-mod-nfqueue", "+iptables-mod-u32", "+iptables-mod-extra",
		"+kmod-ipt-conntrack", "+kmod-nf-conntrack-netlink", "+kmod-nft-core", "+kmod-sched-core", "+kmod-sched-bpf",
		"define Package/pptpgw/conffiles\n/etc/config/pptpgw\nendef",
		"$(INSTALL_CONF) ./files/pptpgw.config $(1)/etc/config/pptpgw",
		"$(INSTALL_BIN) ./files/pptpgw.init $(1)/etc/init.d/pptpgw",
		"$(INSTALL_DATA) ./files/pptpgw.options $(1)/usr/share/pptpgw/options",
		"$(INSTALL_DATA) ./files/pptpgw-uci.sh $(1)/usr/share/pptpgw/uci.sh",
		"$(INSTALL_BIN) ./files/firewall.include $(1)/usr/share/pptpgw/firewall.include",
	} {
		if !strings.Contains(mk, want) {
			t.Errorf("Makefile lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "..", strings.TrimPrefix(vars["GO_PKG_BUILD_PKG"], "$(GO_PKG)/"))); err != nil {
		t.Error(err)
	}
	files, _ := filepath.Glob(openwrtPath("files", "*"))
	for _, f := range files {
		if !strings.Contains(mk, "./files/"+filepath.Base(f)+" ") {
			t.Errorf("Makefile does not install files/%s", filepath.Base(f))
		}
	}
	for _, m := range regexp.MustCompile(`(?s)\ndefine (Package/pptpgw/(?:install|prerm))\n(.*?)\nendef`).FindAllStringSubmatch(mk, -1) {
		for _, line := range strings.Split(m[2], "\n") {
			if m[1] == "Package/pptpgw/install" && !strings.HasPrefix(line, "\t") {
				t.Errorf("%s: recipe line without a tab: %q", m[1], line)
			}
		}
	}
	inc, _ := os.ReadFile(openwrtPath("files", "pptpgw.uci-defaults"))
	if !strings.Contains(string(inc), "path=/usr/share/pptpgw/firewall.include") || !strings.Contains(string(inc), "type=script") {
		t.Errorf("uci-defaults does not add the firewall include:\n%s", inc)
	}
}
