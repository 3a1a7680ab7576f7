package check

import (
	"encoding/json"
	"fmt"
	"io"
)

// PrintJSON writes {"checks": [...]} (DESIGN.md "Command line").
func PrintJSON(w io.Writer, rs []Result) error {
	if rs == nil {
		rs = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Checks []Result `json:"checks"`
	}{rs})
}

// Print writes one line per check: status, name, what was found and,
// when something is to be done, the fix.
func Print(w io.Writer, rs []Result) {
	width := 0
	for _, r := range rs {
		width = max(width, len(r.Name))
	}
	for _, r := range rs {
		line := fmt.Sprintf("%-4s  %-*s  %s", r.Status, width, r.Name, r.Detail)
		if r.Fix != "" {
			line += " -- fix: " + r.Fix
		}
		fmt.Fprintln(w, line)
	}
}
