package check

import (
	"strings"
	"testing"
)

// zeroGRE sets the counters of the queue rules' GRE rules to zero: the
// kernel fast path translates everything, nothing reaches the queues.
func zeroGRE(f *Facts) {
	s := f.Saves[FlavourNFT]
	var out []string
	for _, l := range strings.Split(s.Text, "\n") {
		if strings.Contains(l, "-A PPTPGW-GRE-") {
			l = strings.Replace(l, "[7:700]", "[0:0]", 1)
		}
		out = append(out, l)
	}
	s.Text = strings.Join(out, "\n")
	f.Saves[FlavourNFT] = s
}

// daemonSettings is what a daemon with the default rules says.
func daemonSettings() map[string]string {
	return map[string]string{"queue": "0", "queues": "1", "fail-open": "false", "mark-bit": "0x10000000", "repair-rules": "true"}
}

func withDaemon(f *Facts) {
	f.Daemon = DaemonFacts{Socket: "/run/pptpgw/admin.sock", Stats: map[string]uint64{"rules_checks_total": 9}, Settings: daemonSettings()}
}

// TestPathsAndDaemon: each fault, injected into a good host (with a
// daemon answering), turns exactly its check to what it should, and a
// healthy fast path is read as GRE arriving.
func TestPathsAndDaemon(t *testing.T) {
	cases := []struct {
		name   string
		inject func(f *Facts)
		check  string
		want   Status
		detail string
		fix    string
	}{
		{"calls on the nf_tables path", func(f *Facts) {
			zeroGRE(f)
			f.Paths.Kernel = PathCounts{Present: true, Calls: 2, In: 100, Out: 120}
		}, "gre-arriving", OK, "GRE arrives: the queues 0 in, 0 out; the nf_tables fast path (2 calls) 100 in, 120 out", ""},
		{"calls on the bpf path", func(f *Facts) {
			zeroGRE(f)
			f.Paths.BPF = PathCounts{Present: true, Calls: 1, In: 5, Out: 6}
		}, "gre-arriving", OK, "the bpf fast path (1 calls) 5 in, 6 out", ""},
		{"the bpf path's counts since the daemon's last read", func(f *Facts) {
			zeroGRE(f)
			f.Paths.BPF = PathCounts{Present: true, Calls: 1, In: 5, Out: 6, SinceRead: true}
		}, "gre-arriving", OK, "the bpf fast path (1 calls) 5 in, 6 out (the bpf fast path counts since the daemon's last read of it", ""},
		{"GRE leaves through the kernel, none arrives", func(f *Facts) {
			zeroGRE(f)
			f.Paths.Kernel = PathCounts{Present: true, Calls: 1, Out: 50}
		}, "gre-arriving", Warn, "50 GRE packets left but none arrived", "protocol 47"},
		{"fast path unreadable", func(f *Facts) {
			zeroGRE(f)
			f.Paths.BPF = PathCounts{Present: true, Err: "operation not permitted"}
		}, "gre-arriving", OK, "no GRE yet: no call since the rules were installed (the queues 0 in, 0 out (cannot read the bpf fast path: operation not permitted))", ""},
		{"no rules, calls on the kernel path", func(f *Facts) {
			f.Saves[FlavourNFT] = Save{Ran: true, Text: natSave}
			f.Paths.Kernel = PathCounts{Present: true, Calls: 1, In: 3, Out: 3}
		}, "gre-arriving", OK, "GRE arrives: the nf_tables fast path (1 calls) 3 in, 3 out", ""},
		{"daemon on other queues", func(f *Facts) { f.Daemon.Settings["queue"] = "4" }, "rules-running", Warn,
			"the daemon runs with --queue 4 --queues 1 --fail-open=false --mark-bit 0x10000000 but this check was given --queue 0", "--config"},
		{"rules drifted from the running daemon's", func(f *Facts) {
			f.Daemon.Settings["fail-open"] = "true"
			f.Rules.FailOpen = true
		}, "rules-running", Fail, "the rules have drifted from what the running daemon needs", "--repair-rules"},
		{"daemon does not repair", func(f *Facts) { f.Daemon.Stats["rules_missing"] = 2 }, "rules-running", Fail,
			"finds 2 differences in its rules and does not repair them", "--repair-rules"},
		{"rules keep disappearing", func(f *Facts) {
			f.Daemon.Stats["rules_repairs_total"] = 3
			f.Daemon.Stats["rules_repaired_total"] = 12
		}, "rules-running", Warn, "put its rules back 3 times (12 chains and rules)", "firewall"},
		{"older daemon without settings", func(f *Facts) { f.Daemon.Settings = nil }, "rules-running", OK, "does not say its settings", ""},
		{"no daemon", func(f *Facts) { f.Daemon = DaemonFacts{Socket: "/x.sock", Err: "connection refused"} }, "rules-running", OK, "no daemon answers on /x.sock", ""},
		{"replication down", func(f *Facts) {
			f.Daemon.Stats["ha_connected"] = 0
			f.Daemon.Stats["ha_errors"] = 4
		}, "replication", Fail, "does not reach etcd: calls set up now would be lost on a failover until it does (ha_errors 4)", "etcd"},
		{"replication up", func(f *Facts) {
			f.Daemon.Stats["ha_connected"] = 1
			f.Daemon.Stats["ha_lag_ms"] = 0
		}, "replication", OK, "replication connected (ha_lag_ms 0)", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			withDaemon(f)
			if r := results(f)[c.check]; r.Status != OK {
				t.Fatalf("before the fault: %+v", r)
			}
			c.inject(f)
			got := results(f)
			r := got[c.check]
			if r.Status != c.want || !strings.Contains(r.Detail, c.detail) || !strings.Contains(r.Fix, c.fix) || (c.want != OK) != (r.Fix != "") {
				t.Errorf("%s: %s %q fix %q\nwant %s with %q, fix with %q", c.check, r.Status, r.Detail, r.Fix, c.want, c.detail, c.fix)
			}
		})
	}
}

// TestGoodHostWithDaemon: a daemon answering with the same configuration
// and nothing to repair is all ok.
func TestGoodHostWithDaemon(t *testing.T) {
	f := good()
	withDaemon(f)
	for _, r := range Run(f) {
		if r.Status != OK || r.Detail == "" {
			t.Errorf("%s: %s %q", r.Name, r.Status, r.Detail)
		}
	}
	if r := results(f)["rules-running"]; !strings.Contains(r.Detail, "match the running daemon's configuration") {
		t.Errorf("rules-running: %q", r.Detail)
	}
}
