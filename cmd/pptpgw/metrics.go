package main

import (
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/gateway"
)

// family is one Prometheus metric a stats key maps to; label is its one
// label's name ("" for none).
type family struct {
	name, help string
	kind       prometheus.ValueType
	label      string
	scale      float64 // the stats value times scale is the metric's (0: 1): base units
}

// inSeconds makes f read a stats value of unit (e.g. time.Millisecond) in
// seconds, the Prometheus base unit.
func inSeconds(f *family, unit time.Duration) *family {
	f.scale = unit.Seconds()
	return f
}

func counter(name, help, label string) *family {
	return &family{name: "pptpgw_" + name, help: help, kind: prometheus.CounterValue, label: label}
}

func gauge(name, help, label string) *family {
	return &family{name: "pptpgw_" + name, help: help, kind: prometheus.GaugeValue, label: label}
}

// The metric families (README "Metrics"). `stats --json` keys stay as
// they are (a contract); this is a mapping from them.
var (
	fPackets      = counter("packets_total", "Packets the queues handed to pptpgw, by the reason of their verdict.", "reason")
	fGRE          = counter("gre_packets_total", "GRE packets translated, by the path that translated them (bpf, kernel, queue) and direction (in: towards the inside end).", "path")
	fGREDropped   = counter("gre_dropped_total", "GRE packets dropped by the queue path, by reason.", "reason")
	fICMPDropped  = counter("icmp_dropped_total", "ICMP errors about calls' GRE dropped (they would end a call), by reason.", "reason")
	fQueueDropped = counter("queue_dropped_total", "Packets lost at the NFQUEUE queues: kernel (queue full or no listener), enobufs (netlink socket overrun).", "reason")
	fFastCalls    = gauge("fastpath_calls", "Calls the GRE fast path holds in the kernel, by path.", "path")
	fFastErrors   = counter("fastpath_errors_total", "Updates and counter reads the kernel refused, by fast path.", "path")
	fFastRereads  = counter("fastpath_rereads_total", "Converges that read the whole desired state, not its change log (start, after a failure, an overrun log, a policy change, the minute's backstop), by fast path.", "path")
	fGREPath      = gauge("gre_path_info", "The GRE path in use (the first tier): 1 for its path label.", "path")

	// statFamilies maps the stats keys without a pattern.
	statFamilies = map[string]*family{
		"calls_active":                gauge("calls_active", "Calls established or closing.", ""),
		"calls_pending":               gauge("calls_pending", "Calls requested and not answered yet.", ""),
		"control_conns_active":        gauge("control_connections_active", "Control connections (TCP 1723) tracked.", ""),
		"rules_missing":               gauge("rules_missing", "Rules and chains the last check found differing from the configuration and left.", ""),
		"control_messages":            counter("control_messages_total", "PPTP control messages seen.", ""),
		"rewrites":                    counter("call_id_rewrites_total", "Call IDs rewritten in control messages.", ""),
		"malformed":                   counter("control_malformed_total", "Malformed control messages.", ""),
		"calls_set_up":                counter("calls_set_up_total", "Calls set up (the reply said yes and no limit refused them).", ""),
		"calls_picked_up":             counter("calls_picked_up_total", "Calls picked up mid-stream (their setup was not seen).", ""),
		"calls_ended":                 counter("calls_ended_total", "Calls that left the table.", ""),
		"calls_failed":                counter("calls_failed_total", "Calls whose reply refused them (a Result Code other than OK).", ""),
		"calls_cleared_policy":        counter("calls_cleared_policy_total", "Calls cleared because their PPP link broke the policy.", ""),
		"call_ids_exhausted":          counter("call_ids_exhausted_total", "Calls with no free outer Call ID.", ""),
		"control_out_of_order":        counter("control_out_of_order_total", "Control segments beyond a gap in the sequence space.", ""),
		"control_retransmits":         counter("control_retransmits_total", "Control segments retransmitted.", ""),
		"control_stray":               counter("control_stray_segments_total", "SYN, RST and FIN segments out of place on live control connections: passed, changing nothing.", ""),
		"control_conns_opened":        counter("control_connections_opened_total", "Control connections opened.", ""),
		"control_conns_closed":        counter("control_connections_closed_total", "Control connections closed.", ""),
		"control_denied":              counter("control_connections_denied_total", "Control connections the policy does not allow (--allow-inside, --allow-peer).", ""),
		"events_dropped":              counter("events_dropped_total", "Call events dropped because the log sink did not keep up.", ""),
		"queue_verdict_errors":        counter("queue_verdict_errors_total", "Verdicts the kernel refused.", ""),
		"queue_handler_panics":        counter("queue_handler_panics_total", "Packets whose handling panicked (the packet was dropped).", ""),
		"rules_checks_total":          counter("rules_checks_total", "Rounds of the rules check.", ""),
		"rules_repairs_total":         counter("rules_repairs_total", "Rules checks that found and repaired differences.", ""),
		"rules_repaired_total":        counter("rules_restored_total", "Chains and rules put back by the repairs.", ""),
		"rules_check_errors_total":    counter("rules_check_errors_total", "Rules checks that failed to read or repair.", ""),
		"silence_table_created_total": counter("silence_table_created_total", "Times the nf_tables silence table was (re)created.", ""),
		"silence_icmp_dropped":        counter("silence_icmp_dropped_total", "ICMP errors quoting GRE dropped by the nf_tables silence table.", ""),

		// The state file (write on change).
		"state_writes":       counter("state_writes_total", "State file writes.", ""),
		"state_write_errors": counter("state_write_errors_total", "State file writes that failed.", ""),
		"state_snapshot_us":  inSeconds(gauge("state_snapshot_seconds", "How long the last snapshot of the call table held its read lock.", ""), time.Microsecond),
		"state_write_us":     inSeconds(gauge("state_write_seconds", "How long the last state file write took (encode, write, fsync, rename).", ""), time.Microsecond),

		// The event stream (pptpgw events).
		"event_streams_active": gauge("event_streams_active", "Readers of the event stream.", ""),
		"events_lost":          counter("events_lost_total", "Events slow readers of the event stream lost.", ""),

		// A gateway pair (--ha-etcd).
		"ha_connected":        gauge("ha_connected", "1 while this node of a gateway pair reaches etcd.", ""),
		"ha_pending":          gauge("ha_pending", "Connection records waiting to be published to etcd.", ""),
		"ha_lag_ms":           inSeconds(gauge("ha_lag_seconds", "Age of the oldest change not yet published to etcd.", ""), time.Millisecond),
		"ha_publish_ms":       inSeconds(gauge("ha_publish_seconds", "How long the last publish to etcd took.", ""), time.Millisecond),
		"ha_published":        counter("ha_published_total", "Connection records published to etcd.", ""),
		"ha_deleted":          counter("ha_deleted_total", "Connection records deleted from etcd.", ""),
		"ha_imported":         counter("ha_imported_total", "Connection records of other nodes imported.", ""),
		"ha_import_older":     counter("ha_import_older_total", "Imports skipped: older than what this node holds.", ""),
		"ha_import_bad":       counter("ha_import_bad_total", "Imports that did not parse.", ""),
		"ha_import_collision": counter("ha_import_collisions_total", "Imports whose outer Call IDs collided with this node's.", ""),
		"ha_dropped":          counter("ha_dropped_total", "Other nodes' records dropped (their lease ended).", ""),
		"ha_adopted":          counter("ha_adopted_total", "Other nodes' records kept because their traffic passes here.", ""),
		"ha_errors":           counter("ha_errors_total", "etcd requests that failed.", ""),
		"ha_resyncs":          counter("ha_resyncs_total", "Times this node published its whole state again.", ""),
		"ha_overflows":        counter("ha_overflows_total", "Pending records dropped for a full queue.", ""),
	}

	// labelled maps stats keys to a family and its label value.
	labelled = map[string]struct {
		f     *family
		value string
	}{
		"gre_in":                              {fGRE, "queue"},
		"gre_out":                             {fGRE, "queue"},
		"gre_dropped_unknown_call":            {fGREDropped, "unknown_call"},
		"gre_dropped_refused_call":            {fGREDropped, "refused_call"},
		"packets_malformed_gre":               {fGREDropped, "malformed"},
		"packets_gre_version":                 {fGREDropped, "version"},
		"packets_gre_protocol":                {fGREDropped, "protocol"},
		"packets_icmp_net_host_unreachable":   {fICMPDropped, "net_host_unreachable"},
		"packets_icmp_proto_port_unreachable": {fICMPDropped, "proto_port_unreachable"},
		"packets_icmp_prohibited":             {fICMPDropped, "prohibited"},
		"packets_icmp_mtu_too_small":          {fICMPDropped, "mtu_too_small"},
		"packets_icmp_frag_needed_bogus":      {fICMPDropped, "frag_needed_bogus"},
		"queue_drops":                         {fQueueDropped, "kernel"},
		"queue_enobufs":                       {fQueueDropped, "enobufs"},
	}

	// unexported: sums of other metrics, or exported otherwise
	// (calls_refused: by reason from the call events, callMetrics;
	// uptime_seconds: process_start_time_seconds).
	unexported = map[string]bool{"packets_total": true, "calls_refused": true, "uptime_seconds": true}
)

// metricSample is one metric value: its family, label value and direction (GRE).
type metricSample struct {
	f          *family
	label, dir string
	v          float64
}

// metricOf maps a stats key and value to its metric samples; a key
// nothing maps (a counter added without a mapping) keeps a metric of its
// own: a gauge when it counts what is now, else a counter named _total.
func metricOf(key string, v uint64) []metricSample {
	x := float64(v)
	if unexported[key] {
		return nil
	}
	if f := statFamilies[key]; f != nil {
		if f.scale != 0 {
			x *= f.scale
		}
		return []metricSample{{f: f, v: x}}
	}
	var out []metricSample
	if l, ok := labelled[key]; ok {
		s := metricSample{f: l.f, label: l.value, v: x}
		if l.f == fGRE {
			s.dir = strings.TrimPrefix(key, "gre_")
		}
		out = append(out, s)
	}
	if r, ok := strings.CutPrefix(key, "packets_"); ok {
		return append(out, metricSample{f: fPackets, label: r, v: x})
	}
	if out != nil {
		return out
	}
	if s, ok := fastPathSample(key, x); ok {
		return []metricSample{s}
	}
	return []metricSample{fallback(key, x)}
}

// fastPathSample maps gre_PATH_{in,out,calls,errors,rereads} and gre_path_PATH.
func fastPathSample(key string, x float64) (metricSample, bool) {
	if p, ok := strings.CutPrefix(key, "gre_path_"); ok {
		return metricSample{f: fGREPath, label: p, v: x}, true
	}
	rest, ok := strings.CutPrefix(key, "gre_")
	i := strings.LastIndexByte(rest, '_')
	if !ok || i < 0 {
		return metricSample{}, false
	}
	path, what := rest[:i], rest[i+1:]
	switch what {
	case "in", "out":
		return metricSample{f: fGRE, label: path, dir: what, v: x}, true
	case "calls":
		return metricSample{f: fFastCalls, label: path, v: x}, true
	case "errors":
		return metricSample{f: fFastErrors, label: path, v: x}, true
	case "rereads":
		return metricSample{f: fFastRereads, label: path, v: x}, true
	}
	return metricSample{}, false
}

func fallback(key string, x float64) metricSample {
	if strings.HasSuffix(key, "_active") || strings.HasSuffix(key, "_pending") || strings.HasSuffix(key, "_missing") {
		return metricSample{f: gauge(key, "pptpgw "+strings.ReplaceAll(key, "_", " ")+" (stats key "+key+").", ""), v: x}
	}
	name := strings.TrimSuffix(key, "_total") + "_total"
	return metricSample{f: counter(name, "pptpgw "+strings.ReplaceAll(key, "_", " ")+" (stats key "+key+").", ""), v: x}
}

// statsCollector exports the stats counters, read at scrape time so the
// two never disagree, as metrics by the Prometheus conventions. It is
// unchecked (describes nothing): the fast paths and reasons present
// depend on the host.
type statsCollector struct {
	stats  func() map[string]uint64
	health func() []gateway.Problem // nil: no health gauges
	limit  func() int               // --max-calls in force
}

func (c statsCollector) Describe(chan<- *prometheus.Desc) {}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	descs := map[*family]*prometheus.Desc{}
	for key, v := range c.stats() {
		for _, s := range metricOf(key, v) {
			ch <- s.metric(descs)
		}
	}
	if c.limit != nil {
		ch <- prometheus.MustNewConstMetric(descMaxCalls, prometheus.GaugeValue, float64(c.limit()))
	}
	if c.health != nil {
		n := map[string]int{}
		for _, p := range c.health() {
			n[p.Part]++
		}
		for _, part := range healthParts {
			ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(n[part]), part)
		}
	}
}

var (
	descMaxCalls = prometheus.NewDesc("pptpgw_calls_limit", "The call table's limit (--max-calls); refusals start when calls_active reaches it.", nil, nil)
	descProblems = prometheus.NewDesc("pptpgw_health_problems", "What GET /healthz finds wrong now, by part (0: that part works).", []string{"part"}, nil)
	healthParts  = []string{gateway.PartQueues, gateway.PartRules, gateway.PartFastPath, gateway.PartState, gateway.PartCalls, gateway.PartEvents}
)

func (s metricSample) metric(descs map[*family]*prometheus.Desc) prometheus.Metric {
	d := descs[s.f]
	if d == nil {
		var labels []string
		if s.f.label != "" {
			labels = append(labels, s.f.label)
		}
		if s.f == fGRE {
			labels = append(labels, "direction")
		}
		d = prometheus.NewDesc(s.f.name, s.f.help, labels, nil)
		descs[s.f] = d
	}
	var values []string
	if s.f.label != "" {
		values = append(values, s.label)
	}
	if s.f == fGRE {
		values = append(values, s.dir)
	}
	return prometheus.MustNewConstMetric(d, s.f.kind, s.v, values...)
}

// callMetrics counts call events: refusals and teardowns by reason, and
// the setup latency and duration histograms. It sits behind the gateway's
// event buffer, like the log: events_dropped counts what it missed.
type callMetrics struct {
	refused, down   *prometheus.CounterVec
	setup, duration prometheus.Histogram
	now             func() time.Time
	conntrack.NopObserver
}

// refuseReasons are the reasons the table refuses calls for, present at 0
// from the start so that a rate over them is never "no data".
var refuseReasons = []string{"max-calls", "max-calls-per-inside", "unknown-request", "deleted"}

func newCallMetrics() *callMetrics {
	m := &callMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pptpgw_calls_refused_total",
			Help: "Calls refused by pptpgw (max-calls, max-calls-per-inside, unknown-request, deleted, policy-...), by reason."}, []string{"reason"}),
		down: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pptpgw_calls_torn_down_total",
			Help: "Calls torn down after being set up, by reason."}, []string{"reason"}),
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pptpgw_call_setup_seconds",
			Help:    "Call setup latency: the request seen to the reply that set the call up.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pptpgw_call_duration_seconds",
			Help:    "Call duration: set up to torn down (requested to torn down for calls whose setup was not seen).",
			Buckets: []float64{1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400}}),
		now: time.Now,
	}
	for _, r := range refuseReasons {
		m.refused.WithLabelValues(r)
	}
	return m
}

func (m *callMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.refused, m.down, m.setup, m.duration}
}

func (m *callMetrics) CallUp(c conntrack.CallInfo) {
	if c.SetUp != 0 && !c.PickedUp && c.SetUp >= c.Created {
		m.setup.Observe(time.Duration(c.SetUp - c.Created).Seconds())
	}
}

func (m *callMetrics) CallRefused(_ conntrack.CallInfo, reason string) {
	m.refused.WithLabelValues(reason).Inc()
}

func (m *callMetrics) CallDown(c conntrack.CallInfo, reason string) {
	m.down.WithLabelValues(reason).Inc()
	from := c.SetUp
	if from == 0 {
		from = c.Created
	}
	if d := m.now().UnixNano() - from; from != 0 && d >= 0 {
		m.duration.Observe(time.Duration(d).Seconds())
	}
}

// teeObserver hands each event to every observer in turn, with the
// optional interfaces (policy denials, calls ended) to those that have them.
type teeObserver []conntrack.Observer

func (t teeObserver) CallUp(c conntrack.CallInfo) {
	for _, o := range t {
		o.CallUp(c)
	}
}

func (t teeObserver) CallRefused(c conntrack.CallInfo, reason string) {
	for _, o := range t {
		o.CallRefused(c, reason)
	}
}

func (t teeObserver) CallDown(c conntrack.CallInfo, reason string) {
	for _, o := range t {
		o.CallDown(c, reason)
	}
}

func (t teeObserver) Malformed(c conntrack.ConnInfo, reason string) {
	for _, o := range t {
		o.Malformed(c, reason)
	}
}

func (t teeObserver) ControlDenied(c conntrack.ConnInfo, reason string) {
	for _, o := range t {
		if p, ok := o.(conntrack.PolicyObserver); ok {
			p.ControlDenied(c, reason)
		}
	}
}

// buildInfo is pptpgw_build_info{version,goversion} 1.
func buildInfo() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pptpgw_build_info",
		Help:        "pptpgw's version and the Go release that built it (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}}, func() float64 { return 1 })
}

// newRegistry is the daemon's own registry: its counters, the call
// metrics, the build info plus the Go and process collectors.
func newRegistry(d *daemon) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statsCollector{stats: d.Stats, health: d.healthProblems, limit: func() int { return d.gw.Table().Limits().MaxCalls }},
		buildInfo(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if d.calls != nil {
		reg.MustRegister(d.calls.collectors()...)
	}
	return reg
}
