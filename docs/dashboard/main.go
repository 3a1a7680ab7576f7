// Command dashboard renders deploy/grafana/pptpgw.json as docs/dashboard.svg: a schematic of
// the Grafana dashboard, each panel where the dashboard puts it with its title, its kind and
// its queries. It is not a screenshot (no Grafana, no data here): it shows what the dashboard
// asks Prometheus, laid out as Grafana lays it out. Run from the repository root:
//
//	go run ./docs/dashboard
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"html"
	"log"
	"os"
	"strings"
)

const (
	source = "deploy/grafana/pptpgw.json"
	output = "docs/dashboard.svg"

	colW    = 50 // pixels per grid column (Grafana's grid is 24 wide)
	rowH    = 30 // pixels per grid row
	margin  = 10
	header  = 40
	charW   = 6.0 // monospace 10px, roughly
	lineH   = 13
	padding = 8
)

type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

func main() {
	src, err := os.ReadFile(source)
	if err != nil {
		log.Fatal(err)
	}
	svg, err := render(src)
	if err != nil {
		log.Fatalf("%s: %v", source, err)
	}
	if err := os.WriteFile(output, svg, 0o644); err != nil {
		log.Fatal(err)
	}
}

// render draws the dashboard src (Grafana's JSON model) as SVG; the output names the source's
// hash so a test can tell a stale picture.
func render(src []byte) ([]byte, error) {
	var d dashboard
	if err := json.Unmarshal(src, &d); err != nil {
		return nil, err
	}
	bottom := 0
	for _, p := range d.Panels {
		bottom = max(bottom, p.GridPos.Y+p.GridPos.H)
	}
	width, height := 24*colW+2*margin, header+bottom*rowH+2*margin
	var b bytes.Buffer
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n", width, height, width, height)
	fmt.Fprintf(&b, "<!-- source: pptpgw.json sha256 %x -->\n", sha256.Sum256(src))
	fmt.Fprintf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"#111217\"/>\n", width, height)
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"28\" fill=\"#d8d9da\" font-size=\"18\">%s — schematic of deploy/grafana/pptpgw.json (panels and their PromQL; no data)</text>\n",
		margin, esc(d.Title))
	for _, p := range d.Panels {
		drawPanel(&b, p)
	}
	b.WriteString("</svg>\n")
	return b.Bytes(), nil
}

func drawPanel(b *bytes.Buffer, p panel) {
	x, y := margin+p.GridPos.X*colW, header+margin+p.GridPos.Y*rowH
	w, h := p.GridPos.W*colW-4, p.GridPos.H*rowH-4
	if p.Type == "row" {
		fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" fill=\"#ccccdc\" font-size=\"14\" font-weight=\"bold\">▾ %s</text>\n", x, y+18, esc(p.Title))
		return
	}
	fmt.Fprintf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"3\" fill=\"#181b1f\" stroke=\"#2c3235\"/>\n", x, y, w, h)
	kind := p.Type
	if u := p.FieldConfig.Defaults.Unit; u != "" {
		kind += ", " + u
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" fill=\"#d8d9da\" font-size=\"12\" font-weight=\"bold\">%s <tspan fill=\"#8e8e8e\" font-weight=\"normal\">(%s)</tspan></text>\n",
		x+padding, y+16, esc(p.Title), esc(kind))
	maxChars := int(float64(w-2*padding) / charW)
	ly := y + 16 + lineH + 4
	for _, t := range p.Targets {
		for i, line := range wrap(t.Expr, maxChars) {
			if ly > y+h-padding {
				return
			}
			fill := "#73bf69"
			if i > 0 {
				line = "  " + line
			}
			fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" fill=\"%s\" font-size=\"10\" font-family=\"monospace\">%s</text>\n", x+padding, ly, fill, esc(line))
			ly += lineH
		}
	}
}

// wrap cuts s into lines of at most n characters, at spaces or commas where it can.
func wrap(s string, n int) []string {
	s = strings.ReplaceAll(s, `{instance=~"$instance"}`, "") // the same filter everywhere: left out
	var lines []string
	for len(s) > n && n > 10 {
		cut := strings.LastIndexAny(s[:n], " ,(")
		if cut < n/2 {
			cut = n - 1
		}
		lines = append(lines, s[:cut+1])
		s = s[cut+1:]
	}
	return append(lines, s)
}

func esc(s string) string { return html.EscapeString(s) }
