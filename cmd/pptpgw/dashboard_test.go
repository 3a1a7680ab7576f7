package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/collectors"
)

// dashboardExprs returns every PromQL expression of deploy/grafana/pptpgw.json: the panels'
// targets and the template variables' queries.
func dashboardExprs(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "pptpgw.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/pptpgw.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	return exprs
}

var metricName = regexp.MustCompile(`\b(?:pptpgw|process|go)_[a-zA-Z0-9_]+`)

// TestDashboardMetrics: every metric the dashboard queries is one the daemon exports (the
// live /metrics is checked by e2e TestGWHealthAndMetrics).
func TestDashboardMetrics(t *testing.T) {
	reg := testRegistry(t)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp := exposition(t, reg)
	var names []string
	for _, e := range dashboardExprs(t) {
		names = append(names, metricName.FindAllString(e, -1)...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < 15 {
		t.Fatalf("only %d metric names in the dashboard: %q", len(names), names)
	}
	for _, n := range names {
		if !strings.Contains(exp, "\n"+n+"{") && !strings.Contains(exp, "\n"+n+" ") {
			t.Errorf("the dashboard queries %s, which the daemon does not export", n)
		}
	}
}
