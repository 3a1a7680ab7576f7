package check

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pptpgw/pptpgw/nat/bpf"
	"github.com/pptpgw/pptpgw/nat/nft"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// PathCounts is what one kernel GRE fast path holds and counted: the
// calls mapped now and their packets each way (calls since gone are not
// counted: the kernel dropped their entries).
type PathCounts struct {
	Present bool   // the path's table or pinned maps exist
	Err     string // reading them failed
	Calls   int
	In, Out uint64
	// SinceRead: the counts are since the daemon's last read of them
	// (the bpf lines, swapped to zero at each read), not since the calls
	// began.
	SinceRead bool
}

// FastPaths are the kernel fast paths' counters, read whatever --gre-path
// says: the path in use is the one that holds calls.
type FastPaths struct {
	Kernel PathCounts // nf_tables: table ip pptpgw, element counters
	BPF    PathCounts // tc-eBPF: the maps pinned under --bpf-pin-dir
}

// gatherFastPaths reads both fast paths' counters read-only.
func gatherFastPaths(bpfPinDir string) FastPaths {
	var p FastPaths
	t, err := nft.ReadTotals(nft.Config{})
	p.Kernel = pathCounts(err, t.Calls, t.PacketsIn, t.PacketsOut)
	b, err := bpf.ReadPinned(bpfPinDir)
	p.BPF = pathCounts(err, b.Calls, b.PacketsIn, b.PacketsOut)
	p.BPF.SinceRead = p.BPF.Present && b.SinceRead
	return p
}

func pathCounts(err error, calls int, in, out uint64) PathCounts {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return PathCounts{}
	case err != nil:
		return PathCounts{Present: true, Err: err.Error()}
	}
	return PathCounts{Present: true, Calls: calls, In: in, Out: out}
}

// greSource is one place GRE is counted.
type greSource struct {
	name    string
	in, out uint64
}

// greSources lists where GRE was counted: the queue rules (GRE the
// kernel did not translate) and each fast path present; notes says what
// could not be read.
func greSources(f *Facts) (srcs []greSource, notes []string) {
	if rs, err := f.defaultRuleset(); err == "" && hasOurChains(rs) {
		srcs = append(srcs, greSource{"the queues", greCounter(rs, rules.TableRaw, rules.ChainGREIn),
			greCounter(rs, rules.TableMangle, rules.ChainGREOut)})
	}
	for _, p := range []struct {
		name string
		c    PathCounts
	}{{"the nf_tables fast path", f.Paths.Kernel}, {"the bpf fast path", f.Paths.BPF}} {
		switch {
		case !p.c.Present:
		case p.c.Err != "":
			notes = append(notes, "cannot read "+p.name+": "+p.c.Err)
		default:
			srcs = append(srcs, greSource{fmt.Sprintf("%s (%d calls)", p.name, p.c.Calls), p.c.In, p.c.Out})
			if p.c.SinceRead {
				notes = append(notes, p.name+" counts since the daemon's last read of it, a second at most while it runs")
			}
		}
	}
	return srcs, notes
}

// checkGREArriving reads every GRE path: the queue rules' counters, the
// nf_tables elements' and the pinned bpf maps'. GRE that left but never
// arrived on any path points at something upstream.
func checkGREArriving(f *Facts) Result {
	srcs, notes := greSources(f)
	if len(srcs) == 0 {
		return warn("cannot tell: pptpgw's rules (and their counters) are not there, and no fast path holds calls"+
			suffix(notes), installFix)
	}
	var in, out uint64
	var parts []string
	for _, s := range srcs {
		in, out = in+s.in, out+s.out
		parts = append(parts, fmt.Sprintf("%s %d in, %d out", s.name, s.in, s.out))
	}
	where := strings.Join(parts, "; ") + suffix(notes)
	switch {
	case in > 0:
		return ok("GRE arrives: " + where)
	case out > 0:
		return warn(fmt.Sprintf("%d GRE packets left but none arrived at a public address (%s): something upstream drops IP protocol 47 or does not NAT it back", out, where),
			"allow IP protocol 47 (GRE) in from the PPTP servers on every firewall upstream; behind another NAT (a modem), turn on its PPTP/GRE passthrough or forward protocol 47 to this host")
	}
	return ok("no GRE yet: no call since the rules were installed (" + where + ")")
}

func suffix(notes []string) string {
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}
