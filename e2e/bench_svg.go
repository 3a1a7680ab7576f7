//go:build e2e

package e2e

import (
	"fmt"
	"html"
	"strings"
)

// benchSVG draws the benchmark's medians as a grouped bar chart: one group
// per direction and size, one bar per path, the bar's label its packets/s
// and ratio to the reference path. Plain SVG, no dependency.
func benchSVG(title string, groups []string, paths []string, pps func(g, p int) float64, ref int) string {
	const (
		w, h             = 960, 420
		left, right      = 70, 20
		top, bottom      = 50, 110
		groupGap, barGap = 28, 4
	)
	colors := []string{"#9e9e9e", "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756"}
	maxV := 0.0
	for g := range groups {
		for p := range paths {
			maxV = max(maxV, pps(g, p))
		}
	}
	if maxV <= 0 {
		maxV = 1
	}
	// a round step for the axis: 1, 2 or 5 times a power of ten, at most 8 lines
	step := 1.0
	for maxV/step > 8 {
		switch d := step / pow10below(step); d {
		case 1:
			step *= 2
		case 2:
			step = step / 2 * 5
		default:
			step *= 2
		}
	}
	top5 := step
	for top5 < maxV*1.08 {
		top5 += step
	}
	plotW, plotH := float64(w-left-right), float64(h-top-bottom)
	y := func(v float64) float64 { return float64(top) + plotH*(1-v/top5) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	for v := 0.0; v <= top5+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, w-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, kpps(v))
	}
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">GRE packets/s received</text>`+"\n", top+int(plotH/2))
	groupW := (plotW - groupGap*float64(len(groups))) / float64(len(groups))
	barW := (groupW - barGap*float64(len(paths)-1)) / float64(len(paths))
	for g, name := range groups {
		x0 := float64(left) + groupGap/2 + float64(g)*(groupW+groupGap)
		for p := range paths {
			v := pps(g, p)
			x := x0 + float64(p)*(barW+barGap)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y(v), barW, y(0)-y(v), colors[p%len(colors)])
			label := kpps(v)
			if r := pps(g, ref); r > 0 && p != ref {
				label += fmt.Sprintf(" %.2fx", v/r)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", x+barW/2, y(v)-4, label)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x0+groupW/2, h-bottom+18, html.EscapeString(name))
	}
	for p, name := range paths {
		x := left + (p%2)*420
		yy := h - bottom + 45 + (p/2)*22
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="14" fill="%s"/>`+"\n", x, yy-11, colors[p%len(colors)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+20, yy, html.EscapeString(name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func kpps(v float64) string {
	if v >= 1e6 {
		return fmt.Sprintf("%.2fM", v/1e6)
	}
	return fmt.Sprintf("%.0fk", v/1e3)
}

func pow10below(v float64) float64 {
	p := 1.0
	for p*10 <= v*1.0000001 {
		p *= 10
	}
	return p
}
