package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// deploy/ha, a gateway pair: the scripts pass shellcheck and run
// conntrackd's primary-backup steps in order, keepalived reads its
// configuration for both nodes, each node's pptpgw.yaml parses.

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("PPTPGW_TEST_REQUIRE_ETCD") != "" { // CI installs the pair's tools (.ci/run)
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed (apt-get install -y %s)", name, name)
	}
	return p
}

func TestDeployHAShellcheck(t *testing.T) {
	sc := lookTool(t, "shellcheck")
	scripts, _ := filepath.Glob(deployPath("ha", "*.sh"))
	if len(scripts) == 0 {
		t.Fatal("no scripts in deploy/ha")
	}
	out, err := exec.Command(sc, append([]string{"--severity=style"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestDeployHANotify: the notify script's conntrackd steps, in order.
func TestDeployHANotify(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "conntrackd")
	script := "#!/bin/sh\necho \"$*\" >> " + logf + "\ncase \"$3\" in -f) echo 'commit still in progress' >&2; exit 1;; esac\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ arg, want string }{
		{"primary", "-c -f -R -B"},
		{"backup", "-n -t"},
		{"fault", "-t"},
	} {
		os.Remove(logf)
		cmd := exec.Command("sh", deployPath("ha", "notify.sh"), tt.arg)
		cmd.Env = append(os.Environ(), "CONNTRACKD="+fake, "CONNTRACKD_CONF=/x/conntrackd.conf")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("notify.sh %s: %v\n%s", tt.arg, err, out)
		}
		b, _ := os.ReadFile(logf)
		var steps []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "-C" || f[1] != "/x/conntrackd.conf" {
				t.Fatalf("notify.sh %s ran conntrackd %q", tt.arg, l)
			}
			steps = append(steps, f[2])
		}
		if got := strings.Join(steps, " "); got != tt.want {
			t.Errorf("notify.sh %s: conntrackd %s, want %s", tt.arg, got, tt.want)
		}
	}
	if err := exec.Command("sh", deployPath("ha", "notify.sh"), "bogus").Run(); err == nil {
		t.Error("notify.sh bogus: no error")
	}
}

// TestDeployHAKeepalived: keepalived reads the configuration for either
// node; the only complaints allowed are the interfaces this host lacks.
func TestDeployHAKeepalived(t *testing.T) {
	ka := lookTool(t, "keepalived")
	conf, _ := filepath.Abs(deployPath("ha", "keepalived.conf"))
	allowed := regexp.MustCompile(`interface (lan0|wan0) .*doesn't exist|^Non-existent interface specified|^$`)
	for _, node := range []string{"gw-a", "gw-b"} {
		out, _ := exec.Command(ka, "--config-test", "-i", node, "-f", conf).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if !allowed.MatchString(l) {
				t.Errorf("keepalived --config-test -i %s: %s", node, l)
			}
		}
	}
	b, _ := os.ReadFile(conf)
	for _, want := range []string{"vrrp_sync_group", "unicast_peer", "nopreempt", "notify.sh primary", "notify.sh backup",
		"192.168.1.1/24 dev lan0", "203.0.113.1/24 dev wan0"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("keepalived.conf: no %q", want)
		}
	}
}

// TestDeployHAConfigs: each node's pptpgw.yaml parses with replication on
// and its own name; conntrackd syncs over the dedicated link with FTFW
// and leaves GRE out.
func TestDeployHAConfigs(t *testing.T) {
	for _, node := range []string{"gw-a", "gw-b"} {
		c, err := config.Parse(config.CmdRun, []string{"--config", deployPath("ha", "pptpgw-"+node+".yaml")}, nil)
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		if c.HA.Node != node || len(c.HA.Etcd) != 3 {
			t.Errorf("%s: node %q, %d etcd members (want 3: a quorum survives one loss)", node, c.HA.Node, len(c.HA.Etcd))
		}
	}
	b, err := os.ReadFile(deployPath("ha", "conntrackd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"Mode FTFW", "Interface ha0", "IPv4_Destination_Address"} {
		if !strings.Contains(s, want) {
			t.Errorf("conntrackd.conf: no %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^\s*GRE\s*$`).MatchString(s) {
		t.Error("conntrackd.conf accepts GRE: its entries carry no keys")
	}
	r, _ := os.ReadFile(deployPath("ha", "rules.v4"))
	if !strings.Contains(string(r), "-p vrrp -j CT --notrack") || !strings.Contains(string(r), "SNAT --to-source 203.0.113.1") {
		t.Error("rules.v4: want the VRRP notrack rules and the SNAT to the public VIP")
	}
}
