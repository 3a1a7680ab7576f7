package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
	"github.com/pptpgw/pptpgw/nat/gateway"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// allStatKeys is every key `stats` has on a host running both fast paths
// with the rules kept: the table's, one per reason, the gateway's own.
func allStatKeys() map[string]uint64 {
	s := conntrack.New(conntrack.Limits{}, nil).Stats()
	for i, r := range nat.Reasons() {
		s["packets_"+r.String()] = uint64(i + 1)
	}
	for _, k := range rules.StatNames() {
		s[k] = 2
	}
	for _, k := range []string{"packets_total", "gre_in", "gre_out", "gre_dropped_unknown_call", "gre_dropped_refused_call",
		"gre_path_bpf", "queue_drops", "queue_verdict_errors", "queue_enobufs", "queue_handler_panics", "silence_icmp_dropped"} {
		s[k] = 3
	}
	s["gre_path_bpf"] = 1
	for _, k := range []string{"state_writes", "state_write_errors", "state_snapshot_us", "state_write_us", "event_streams_active",
		"events_lost", "ha_connected", "ha_pending", "ha_lag_ms", "ha_publish_ms", "ha_published", "ha_deleted", "ha_imported",
		"ha_import_older", "ha_import_bad", "ha_import_collision", "ha_dropped", "ha_adopted", "ha_errors", "ha_resyncs", "ha_overflows"} {
		s[k] = 5
	}
	for _, p := range []string{"bpf", "kernel"} {
		for _, w := range []string{"in", "out", "calls", "errors", "rereads"} {
			s["gre_"+p+"_"+w] = 4
		}
	}
	return s
}

// TestEveryStatMapped: each stats key has its metric by the table, none
// falls back to a generic one.
func TestEveryStatMapped(t *testing.T) {
	for key := range allStatKeys() {
		for _, s := range metricOf(key, 1) {
			if strings.Contains(s.f.help, "(stats key ") {
				t.Errorf("stats key %s has no metric of its own (falls back to %s)", key, s.f.name)
			}
		}
	}
	if s := metricOf("frobs_active", 1); len(s) != 1 || s[0].f.name != "pptpgw_frobs_active" || s[0].f.kind != prometheus.GaugeValue {
		t.Errorf("fallback gauge: %+v", s)
	}
	if s := metricOf("frobs_total", 1); len(s) != 1 || s[0].f.name != "pptpgw_frobs_total" || s[0].f.kind != prometheus.CounterValue {
		t.Errorf("fallback counter: %+v", s)
	}
}

// testRegistry is the daemon's registry over fixed stats and a few call
// events.
func testRegistry(t *testing.T) *prometheus.Registry {
	m := newCallMetrics()
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return t0.Add(10 * time.Minute) }
	up := conntrack.CallInfo{Created: t0.UnixNano(), SetUp: t0.Add(40 * time.Millisecond).UnixNano()}
	m.CallUp(up)
	m.CallUp(conntrack.CallInfo{Created: t0.UnixNano(), PickedUp: true}) // setup not seen: not observed
	m.CallRefused(conntrack.CallInfo{}, "max-calls")
	m.CallRefused(conntrack.CallInfo{}, "max-calls")
	m.CallDown(up, "stop-control-connection")
	reg := prometheus.NewRegistry()
	problems := []gateway.Problem{{Part: gateway.PartCalls, Detail: "full"}}
	reg.MustRegister(statsCollector{stats: allStatKeys, health: func() []gateway.Problem { return problems }, limit: func() int { return 4096 }},
		buildInfo())
	reg.MustRegister(m.collectors()...)
	return reg
}

func exposition(t *testing.T, reg *prometheus.Registry) string {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestMetricsExposition: the conventions (promtool check metrics when
// installed: counters _total, no reason per name), and the values.
func TestMetricsExposition(t *testing.T) {
	out := exposition(t, testRegistry(t))
	for _, want := range []string{
		`pptpgw_packets_total{reason="gre_in"} 4`,
		`pptpgw_packets_total{reason="icmp_prohibited"} 23`,
		`pptpgw_gre_packets_total{direction="in",path="queue"} 3`,
		`pptpgw_gre_packets_total{direction="out",path="bpf"} 4`,
		`pptpgw_gre_dropped_total{reason="unknown_call"} 3`,
		`pptpgw_gre_dropped_total{reason="malformed"} 10`,
		`pptpgw_icmp_dropped_total{reason="prohibited"} 23`,
		`pptpgw_queue_dropped_total{reason="enobufs"} 3`,
		`pptpgw_fastpath_calls{path="kernel"} 4`,
		`pptpgw_fastpath_rereads_total{path="bpf"} 4`,
		`pptpgw_gre_path_info{path="bpf"} 1`,
		`pptpgw_calls_active 0`,
		`pptpgw_calls_limit 4096`,
		`pptpgw_rules_repairs_total 2`,
		`pptpgw_calls_refused_total{reason="max-calls"} 2`,
		`pptpgw_calls_torn_down_total{reason="stop-control-connection"} 1`,
		`pptpgw_call_setup_seconds_bucket{le="0.05"} 1`,
		`pptpgw_call_setup_seconds_bucket{le="0.025"} 0`,
		`pptpgw_call_setup_seconds_count 1`,
		`pptpgw_call_duration_seconds_bucket{le="900"} 1`,
		`pptpgw_call_duration_seconds_bucket{le="300"} 0`,
		`pptpgw_health_problems{part="call-table"} 1`,
		`pptpgw_health_problems{part="queues"} 0`,
		`pptpgw_build_info{goversion="go`,
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want) {
			t.Errorf("no %s", want)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# TYPE ") && strings.HasSuffix(line, " counter") && !strings.HasSuffix(strings.Fields(line)[2], "_total") {
			t.Errorf("counter without _total: %s", line)
		}
	}
	if strings.Contains(out, "\npptpgw_packets_total ") || strings.Contains(out, "uptime") {
		t.Error("the sum packets_total or uptime_seconds exported")
	}
	promtoolCheck(t, out)
}

// promtoolCheck runs `promtool check metrics` over an exposition.
func promtoolCheck(t *testing.T, exp string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(exp)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
