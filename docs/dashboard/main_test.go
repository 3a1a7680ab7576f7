package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSVGInSync: docs/dashboard.svg is what render makes of the dashboard as it is (go run
// ./docs/dashboard after changing deploy/grafana/pptpgw.json), and shows every panel.
func TestSVGInSync(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", source))
	if err != nil {
		t.Fatal(err)
	}
	want, err := render(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", output))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go run ./docs/dashboard", output)
	}
	for _, title := range []string{"GRE packets by path", "Call setup latency", "Queue health", "Calls refused by reason"} {
		if !strings.Contains(string(got), ">"+title+" <tspan") {
			t.Errorf("no panel %q in the picture", title)
		}
	}
}

func TestWrap(t *testing.T) {
	lines := wrap(`sum by (reason) (rate(pptpgw_calls_refused_total{instance=~"$instance"}[5m]))`, 30)
	if strings.Join(lines, "") != "sum by (reason) (rate(pptpgw_calls_refused_total[5m]))" {
		t.Errorf("wrap lost text: %q", lines)
	}
	for _, l := range lines {
		if len(l) > 30 {
			t.Errorf("line %q over 30", l)
		}
	}
}
