package main

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// statsCollector exports the same flat counters as /v1/stats, read at
// scrape time, so the two never disagree.
type statsCollector struct{ d *daemon }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range c.d.Stats() {
		kind := prometheus.CounterValue
		if strings.HasSuffix(name, "_active") || strings.HasSuffix(name, "_pending") ||
			strings.HasSuffix(name, "_ms") || name == "ha_connected" { // a gateway pair's state (nat/ha)
			kind = prometheus.GaugeValue
		}
		desc := prometheus.NewDesc("pptpgw_"+name, "pptpgw "+strings.ReplaceAll(name, "_", " ")+" (see README)", nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, kind, float64(v))
	}
}

// newRegistry is the daemon's own registry: its counters plus the Go and
// process collectors.
func newRegistry(d *daemon) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statsCollector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
