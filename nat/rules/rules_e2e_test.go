//go:build e2e

package rules

import (
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

var counterRE = regexp.MustCompile(`\[\d+:\d+\]`)

// save returns iptables-save of ns without comments and counters, and
// without the tables that hold nothing but empty built-in chains (the
// nft flavour leaves a table behind once anything listed it).
func save(t *testing.T, ns, bin string) string {
	t.Helper()
	out := sh(t, "ip", "netns", "exec", ns, bin+"-save")
	var tables [][]string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(counterRE.ReplaceAllString(l, ""))
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "*"):
			tables = append(tables, []string{l})
		default:
			tables[len(tables)-1] = append(tables[len(tables)-1], l)
		}
	}
	var keep []string
	for _, tb := range tables {
		empty := true
		for _, l := range tb {
			if strings.HasPrefix(l, "-A ") || (strings.HasPrefix(l, ":") && strings.HasSuffix(l, " -")) {
				empty = false
			}
		}
		if !empty {
			keep = append(keep, tb...)
		}
	}
	return strings.Join(keep, "\n")
}

func TestE2EInstallRemove(t *testing.T) {
	needRoot(t)
	for _, bin := range []string{"iptables-nft", "iptables-legacy"} {
		t.Run(bin, func(t *testing.T) {
			if _, err := exec.LookPath(bin); err != nil {
				t.Skip(bin + " not installed")
			}
			ns := newNS(t, "rules")
			ipt, err := New(wrapper(t, ns, bin))
			if err != nil {
				t.Fatal(err)
			}
			wantMode := NFTables
			if bin == "iptables-legacy" {
				wantMode = Legacy
			}
			if m, err := Backend(wrapper(t, ns, bin)); err != nil || m != wantMode {
				t.Errorf("Backend = %q, %v; want %q", m, err, wantMode)
			}
			x := func(args ...string) string {
				return sh(t, append([]string{"ip", "netns", "exec", ns, bin}, args...)...)
			}
			// An operator's own rules, which must come through untouched.
			x("-t", "mangle", "-A", "FORWARD", "-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu")
			x("-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "CT", "--notrack")
			before := save(t, ns, bin)

			cfg := Config{Queue: 10, Queues: 2}
			rep, err := Install(ipt, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Chains) != 7 || len(rep.Rules) != 20 {
				t.Errorf("first Install added %d chains, %d rules; want 7, 20", len(rep.Chains), len(rep.Rules))
			}
			installed := save(t, ns, bin)
			if d, err := Verify(ipt, cfg); err != nil || len(d) != 0 {
				t.Fatalf("Verify after Install: %q, %v", d, err)
			}
			rep2, err := Install(ipt, cfg)
			if err != nil || !rep2.Empty() {
				t.Fatalf("second Install: %+v, %v", rep2, err)
			}
			if got := save(t, ns, bin); got != installed {
				t.Errorf("second Install changed the rules:\n%s\nwant:\n%s", got, installed)
			}
			show, err := Show(ipt)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range show {
				if strings.HasPrefix(l, "-A ") && !strings.Contains(installed, l) {
					t.Errorf("Show line %q not in iptables-save", l)
				}
			}

			// FailOpen touches the control rules only (forwarded and the router's own).
			d, _ := Verify(ipt, Config{Queue: 10, Queues: 2, FailOpen: true})
			if len(d) != 12 {
				t.Errorf("Verify with FailOpen = %q; want 6 missing + 6 extra control rules", d)
			}
			for _, l := range d {
				if !strings.Contains(l, "-A "+ChainCTL+" ") && !strings.Contains(l, "-A "+ChainCTLOut+" ") && !strings.Contains(l, "-A "+ChainCTLIn+" ") {
					t.Errorf("FailOpen changed a non-control rule: %s", l)
				}
			}
			// A changed queue number.
			if d, _ := Verify(ipt, Config{Queue: 11, Queues: 2}); len(d) != 20 {
				t.Errorf("Verify with another queue = %d lines, want 20:\n%s", len(d), strings.Join(d, "\n"))
			}
			if _, err := Install(ipt, Config{Queue: 11, Queues: 2}); !errors.Is(err, ErrMismatch) {
				t.Errorf("Install over another queue: %v, want ErrMismatch", err)
			}
			x("-t", "mangle", "-R", ChainGREOut, "1", "-p", "gre", "-j", "NFQUEUE", "--queue-num", "99")
			d, _ = Verify(ipt, cfg)
			if len(d) != 2 || !strings.HasPrefix(d[0], "missing rule: -t mangle -A PPTPGW-GRE-OUT") ||
				!strings.Contains(d[1], "--queue-num 99") {
				t.Errorf("Verify after replacing a rule = %q", d)
			}
			// A deleted rule, repaired in place by Install.
			x("-t", "mangle", "-D", ChainGREOut, "1")
			x("-t", "raw", "-D", ChainNoTrack, "1")
			d, _ = Verify(ipt, cfg)
			if len(d) != 2 || !strings.Contains(d[0], "-A PPTPGW-NOTRACK -p gre") || !strings.Contains(d[1], "-A PPTPGW-GRE-OUT") {
				t.Errorf("Verify after deleting two rules = %q", d)
			}
			if rep, err := Install(ipt, cfg); err != nil || len(rep.Rules) != 2 {
				t.Errorf("repairing Install = %+v, %v", rep, err)
			}
			if got := save(t, ns, bin); got != installed {
				t.Errorf("after repair:\n%s\nwant:\n%s", got, installed)
			}

			// The kernel helper attached by hand is found.
			x("-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
			h, err := HelperAttached(ipt)
			if err != nil || len(h) != 1 || h[0] != "-t raw -A PREROUTING -p tcp -m tcp --dport 1723 -j CT --helper pptp" {
				t.Errorf("HelperAttached = %q, %v", h, err)
			}
			x("-t", "raw", "-D", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")

			if err := Remove(ipt); err != nil {
				t.Fatal(err)
			}
			if got := save(t, ns, bin); got != before {
				t.Errorf("after Remove:\n%s\nwant:\n%s", got, before)
			}
			if err := Remove(ipt); err != nil {
				t.Errorf("second Remove: %v", err)
			}

			// run --install-rules: Undo removes exactly what Install added.
			rep, err = Install(ipt, Config{FailOpen: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := Undo(ipt, rep); err != nil {
				t.Fatal(err)
			}
			if got := save(t, ns, bin); got != before {
				t.Errorf("after Install+Undo:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}

// TestE2ERepairAfterRestore: an operator's firewall reload
// (`iptables-restore` without --noflush, as netfilter-persistent does)
// deletes pptpgw's chains; Repair puts back exactly what was there, after
// the operator's own rules, and a second Repair changes nothing.
func TestE2ERepairAfterRestore(t *testing.T) {
	needRoot(t)
	for _, bin := range []string{"iptables-nft", "iptables-legacy"} {
		t.Run(bin, func(t *testing.T) {
			if _, err := exec.LookPath(bin); err != nil {
				t.Skip(bin + " not installed")
			}
			ns := newNS(t, "silence-repair")
			ipt, err := New(wrapper(t, ns, bin))
			if err != nil {
				t.Fatal(err)
			}
			ruleset := "*raw\n-A PREROUTING -p udp --dport 53 -j CT --notrack\nCOMMIT\n" +
				"*mangle\n-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu\nCOMMIT\n"
			restore := func() {
				cmd := exec.Command("ip", "netns", "exec", ns, bin+"-restore")
				cmd.Stdin = strings.NewReader(ruleset)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s-restore: %v: %s", bin, err, out)
				}
			}
			restore()
			cfg := Config{Queue: 4}
			if _, err := Install(ipt, cfg); err != nil {
				t.Fatal(err)
			}
			installed := save(t, ns, bin)
			restore() // the reload: pptpgw's chains are gone
			if d, _ := Verify(ipt, cfg); len(d) != 7+20 {
				t.Fatalf("Verify after the reload: %d lines, want 27:\n%s", len(d), strings.Join(d, "\n"))
			}
			rep, err := Repair(ipt, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Restored() != 7+20 || len(rep.Removed) != 0 {
				t.Errorf("Repair restored %d, removed %d; want 27, 0", rep.Restored(), len(rep.Removed))
			}
			if got := save(t, ns, bin); got != installed {
				t.Errorf("after Repair:\n%s\nwant:\n%s", got, installed)
			}
			// A reload that re-adds one jump by hand (a script with -A
			// and --noflush): the duplicate goes, the order stays.
			sh(t, "ip", "netns", "exec", ns, bin, "-t", "raw", "-A", "PREROUTING", "-m", "mark", "!", "--mark",
				"0x10000000/0x10000000", "-j", ChainNoTrack)
			if _, err := Repair(ipt, cfg); err != nil {
				t.Fatal(err)
			}
			if got := save(t, ns, bin); got != installed {
				t.Errorf("after Repair of a duplicate jump:\n%s\nwant:\n%s", got, installed)
			}
			if rep, err := Repair(ipt, cfg); err != nil || len(rep.Differences) != 0 {
				t.Errorf("second Repair: %+v, %v", rep, err)
			}
		})
	}
}
