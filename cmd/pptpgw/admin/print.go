package admin

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// PrintCalls writes calls as an aligned table for people, one call a line sorted by id, like
// `conntrack -L`: ID STATE ROLE INSIDE PUBLIC PEER AGE IDLE PKTS-IN PKTS-OUT BYTES-IN BYTES-OUT
// AUTH MPPE, where INSIDE, PUBLIC and PEER are address:call-id, AGE counts from created and IDLE from
// last_seen. A Call ID not known yet (in a pending call) prints as "-", and so do an auth and an
// MPPE not known yet; MPPE's spaces print as dashes ("128-bit-stateless") so that every column is
// one word. The header is printed even for an empty table.
func PrintCalls(w io.Writer, calls []CallView) error {
	return printCalls(w, calls, time.Now())
}

func printCalls(w io.Writer, calls []CallView, now time.Time) error {
	calls = slices.Clone(calls)
	slices.SortFunc(calls, func(a, b CallView) int { return strings.Compare(a.ID, b.ID) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// A gateway pair's calls name their node in a last column.
	nodes := slices.ContainsFunc(calls, func(c CallView) bool { return c.Node != "" })
	head := "ID\tSTATE\tROLE\tINSIDE\tPUBLIC\tPEER\tAGE\tIDLE\tPKTS-IN\tPKTS-OUT\tBYTES-IN\tBYTES-OUT\tAUTH\tMPPE"
	if nodes {
		head += "\tNODE"
	}
	fmt.Fprintln(tw, head)
	for _, c := range calls {
		// In a pending call one end has not answered yet. When it is the inside end, its Call ID
		// and so the outer one are open (the id says pending-); otherwise the peer's is.
		insideKnown := !strings.Contains(c.ID, "/pending-")
		peerKnown := c.State != "pending" || !insideKnown
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s",
			c.ID, c.State, c.Role,
			endpoint(c.InsideAddr, c.InsideCallID, insideKnown),
			endpoint(c.PublicAddr, c.OuterCallID, insideKnown),
			endpoint(c.PeerAddr, c.PeerCallID, peerKnown),
			since(now, c.Created), since(now, c.LastSeen),
			c.PacketsIn, c.PacketsOut, c.BytesIn, c.BytesOut,
			word(c.Auth), word(c.MPPE))
		if nodes {
			fmt.Fprintf(tw, "\t%s", word(c.Node))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print calls: %w", err)
	}
	return nil
}

// word prints s as one column: "-" when empty, spaces as dashes.
func word(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, " ", "-")
}

// endpoint formats addr:callid, with "-" for what is not known.
func endpoint(addr string, id uint16, known bool) string {
	if addr == "" {
		addr = "-"
	}
	if !known {
		return addr + ":-"
	}
	return fmt.Sprintf("%s:%d", addr, id)
}

// since formats now-t compactly ("42s", "12m5s", "4h12m", "3d4h"); "-" for a zero time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// PrintStats writes the counters as aligned "name value" lines sorted by name.
func PrintStats(w io.Writer, stats map[string]uint64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(stats)) {
		fmt.Fprintf(tw, "%s\t%d\n", k, stats[k])
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print stats: %w", err)
	}
	return nil
}
