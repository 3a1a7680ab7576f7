//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// checkResult is one line of `pptpgw check --json`.
type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// runCheck runs `pptpgw check --json` in ns (through prefix, e.g. setpriv,
// when given) and returns the results by name and the exit code.
func runCheck(t *testing.T, ns *lab.NS, prefix ...string) (map[string]checkResult, int) {
	t.Helper()
	args := append(append(prefix, ns.Lab.PptpgwPath()), "check", "--json")
	cmd := ns.Command(args...)
	out, err := cmd.Output()
	code := 0
	if err != nil {
		ee, ok := err.(interface{ ExitCode() int })
		if !ok {
			t.Fatalf("pptpgw check: %v", err)
		}
		code = ee.ExitCode()
	}
	var body struct {
		Checks []checkResult `json:"checks"`
	}
	if err := json.Unmarshal(out, &body); err != nil {
		t.Fatalf("pptpgw check --json: %v: %q", err, out)
	}
	res := map[string]checkResult{}
	for _, c := range body.Checks {
		if c.Status != "ok" && c.Status != "warn" && c.Status != "fail" {
			t.Errorf("check %s: status %q", c.Name, c.Status)
		}
		res[c.Name] = c
	}
	return res, code
}

// wantCheck asserts one check's status and that its detail (and, unless
// ok, its fix) mention what was injected.
func wantCheck(t *testing.T, res map[string]checkResult, name, status, detail string) checkResult {
	t.Helper()
	r, ok := res[name]
	if !ok {
		t.Fatalf("no check %s in %v", name, res)
	}
	if r.Status != status || !strings.Contains(r.Detail, detail) || (status != "ok" && r.Fix == "") {
		t.Errorf("check %s: %s %q (fix %q); want %s mentioning %q", name, r.Status, r.Detail, r.Fix, status, detail)
	}
	return r
}

// allOK asserts a clean bill of health: exit 0, every check ok.
func allOK(t *testing.T, ns *lab.NS, when string) {
	t.Helper()
	res, code := runCheck(t, ns)
	for _, r := range res {
		if r.Status != "ok" {
			t.Errorf("%s: check %s: %s %q (fix %q)", when, r.Name, r.Status, r.Detail, r.Fix)
		}
	}
	if code != 0 {
		t.Errorf("%s: exit %d, want 0", when, code)
	}
}

// TestCheck: `pptpgw check` on a correctly set-up gateway namespace says
// ok to everything; each misconfiguration injected in turn turns exactly
// its check to fail (exit 1) or warn (exit 0), and applying the fix it
// prints (where that is a command) makes it ok again.
func TestCheck(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	gw := tp.gw
	gw.DefaultRoute(serverIP)
	gw.MustPptpgw("rules", "install")
	g := gw.StartGateway(lab.GatewayConfig{})
	allOK(t, gw, "healthy gateway")

	// Without CAP_NET_ADMIN (root, bounding set cleared): the capability
	// check fails, and so does what needs it.
	res, code := runCheck(t, gw, "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
	wantCheck(t, res, "cap-net-admin", "fail", "lacks CAP_NET_ADMIN")
	if code != 1 {
		t.Errorf("without CAP_NET_ADMIN: exit %d", code)
	}
	// With CAP_NET_ADMIN and CAP_BPF alone (the container's and the
	// DaemonSet's privileges), everything is readable and ok. (Not once
	// iptables-legacy has tables: reading them takes a raw socket,
	// CAP_NET_RAW.)
	res, code = runCheck(t, gw, "setpriv", "--bounding-set=-all,+net_admin,+bpf", "--inh-caps=-all", "--")
	for n, r := range res {
		if r.Status != "ok" {
			t.Errorf("with CAP_NET_ADMIN and CAP_BPF only: check %s %s %q", n, r.Status, r.Detail)
		}
	}
	if code != 0 {
		t.Errorf("with CAP_NET_ADMIN and CAP_BPF only: exit %d", code)
	}
	// Without CAP_BPF the bpf path cannot load: auto falls back to
	// nf_tables, which the check says.
	res, code = runCheck(t, gw, "setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--")
	wantCheck(t, res, "gre-path-bpf", "warn", "no CAP_BPF")
	if code != 0 {
		t.Errorf("with CAP_NET_ADMIN only: exit %d", code)
	}

	inject := func(name, status, detail string, do, undo func()) {
		t.Helper()
		do()
		res, code := runCheck(t, gw)
		wantCheck(t, res, name, status, detail)
		for n, r := range res {
			if n != name && r.Status != "ok" {
				t.Errorf("after %s: check %s also %s: %q", detail, n, r.Status, r.Detail)
			}
		}
		if wantCode := map[string]int{"fail": 1, "warn": 0}[status]; code != wantCode {
			t.Errorf("%s %s: exit %d, want %d", name, status, code, wantCode)
		}
		undo()
		allOK(t, gw, "after undoing "+name)
	}
	run := func(args ...string) func() { return func() { gw.MustRun(args...) } }

	inject("ip-forward", "fail", "ip_forward = 0", run("sysctl", "-qw", "net.ipv4.ip_forward=0"), run("sysctl", "-qw", "net.ipv4.ip_forward=1"))

	// The kernel's helper by iptables: undone with the fix check prints.
	gw.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
	res, _ = runCheck(t, gw)
	r := wantCheck(t, res, "kernel-helper", "fail", "--helper pptp")
	if !strings.HasPrefix(r.Fix, "iptables-nft -t raw -D PREROUTING") {
		t.Fatalf("fix %q", r.Fix)
	}
	gw.MustRun(strings.Fields(r.Fix)...)
	allOK(t, gw, "after the kernel-helper fix")

	// The kernel's helper by an nft ct helper object.
	inject("kernel-helper", "fail", `nft ct helper "pptph"`, func() {
		script := filepath.Join(gw.Lab.Dir, "helper.nft")
		os.WriteFile(script, []byte(`table inet pptpgwtest {
	ct helper pptph { type "pptp" protocol tcp; l3proto ip; }
	chain pre { type filter hook prerouting priority 0; tcp dport 1723 ct helper set "pptph"; }
}
`), 0o644)
		gw.MustRun("nft", "-f", script)
	}, run("nft", "delete", "table", "inet", "pptpgwtest"))

	// One of pptpgw's rules deleted: the fix (reinstall) puts it back.
	inject("rules", "fail", "missing rule: -t mangle -A PPTPGW-CTL -p tcp -m tcp --dport 1723",
		run("iptables", "-t", "mangle", "-D", "PPTPGW-CTL", "-p", "tcp", "-m", "tcp", "--dport", "1723", "-j", "NFQUEUE", "--queue-num", "0"),
		func() { gw.MustPptpgw("rules", "install") })

	// pptpgw's rules in iptables-legacy as well: the fix strips them.
	rulesV4, err := filepath.Abs(filepath.Join("..", "deploy", "rules.v4"))
	if err != nil {
		t.Fatal(err)
	}
	gw.MustRun("sh", "-c", "iptables-legacy-restore --noflush < "+rulesV4)
	res, code = runCheck(t, gw)
	r = wantCheck(t, res, "iptables-flavours", "fail", "both iptables-legacy and iptables-nft")
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	gw.MustRun("sh", "-c", r.Fix)
	allOK(t, gw, "after the iptables-flavours fix")
	inject("iptables-flavours", "warn", "iptables-legacy also holds 1 rules (tables filter)",
		run("iptables-legacy", "-A", "FORWARD", "-p", "47", "-j", "DROP"), run("iptables-legacy", "-F", "FORWARD"))

	inject("queues", "fail", "no process is bound to queue(s) 0, 1", func() {
		if err := g.Stop(); err != nil {
			t.Fatalf("stop pptpgw: %v", err)
		}
	}, func() { g.Restart() })

	inject("nat-rule", "warn", "no MASQUERADE or SNAT",
		run("iptables", "-t", "nat", "-D", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"),
		run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"))

	rpAll := strings.TrimSpace(gw.MustRun("sysctl", "-n", "net.ipv4.conf.all.rp_filter"))
	inject("rp-filter", "warn", "strict reverse-path filtering on wan, wan2", func() {
		gw.IP("link", "add", "wan2", "type", "veth", "peer", "name", "wan2p") // no dummy driver here
		gw.IP("link", "set", "wan2", "up")
		gw.IP("route", "add", "default", "via", "10.9.9.1", "dev", "wan2", "metric", "200", "onlink")
		gw.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
	}, func() {
		gw.IP("link", "del", "wan2")
		gw.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter="+rpAll)
	})

	inject("outside-mtu", "warn", "wan MTU 1400 leaves a PPP MTU of 1356",
		func() { gw.IP("link", "set", "wan", "mtu", "1400") }, func() { gw.IP("link", "set", "wan", "mtu", "1500") })

}

// TestRulesV4Restore: deploy/rules.v4 loaded with iptables-restore
// --noflush (both flavours) is exactly what `pptpgw rules install` would
// install: `rules show` and `check` find no difference, and `rules
// install` adds nothing.
func TestRulesV4Restore(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	rulesV4, err := filepath.Abs(filepath.Join("..", "deploy", "rules.v4"))
	if err != nil {
		t.Fatal(err)
	}
	// pptpgw drives whatever `iptables` is: for legacy, a PATH whose
	// iptables is iptables-legacy.
	legacyBin := l.Path("legacy-bin")
	if err := os.MkdirAll(legacyBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/sbin/iptables-legacy", filepath.Join(legacyBin, "iptables")); err != nil {
		t.Fatal(err)
	}
	bin := l.PptpgwPath()
	for _, flavour := range []string{"nft", "legacy"} {
		ns := l.AddNS("r" + flavour)
		ns.MustRun("sh", "-c", "iptables-"+flavour+"-restore --noflush < "+rulesV4)
		env := []string{"env", "PATH=" + os.Getenv("PATH")}
		if flavour == "legacy" {
			env[1] = "PATH=" + legacyBin + ":" + os.Getenv("PATH")
		}
		out := ns.MustRun(append(env, bin, "rules", "show")...)
		if strings.Contains(out, "differs") || !strings.Contains(out, "PPTPGW-GRE-IN") {
			t.Errorf("%s: rules show:\n%s", flavour, out)
		}
		out = ns.MustRun(append(env, bin, "rules", "install")...)
		if !strings.Contains(out, "installed 0 chains and 0 rules") {
			t.Errorf("%s: rules install after restore: %s", flavour, out)
		}
		res, _ := runCheck(t, ns, append(env, "setpriv", "--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all", "--")...)
		wantCheck(t, res, "rules", "ok", "all 20 rules in place (iptables-"+flavour+")")
		wantCheck(t, res, "cap-net-admin", "ok", "CAP_NET_ADMIN")
	}
}
