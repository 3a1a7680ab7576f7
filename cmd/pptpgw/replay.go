package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/pptpgw/pptpgw/nat/replay"
)

type prefixList []netip.Prefix

func (p *prefixList) String() string { return fmt.Sprint(*p) }
func (p *prefixList) Set(s string) error {
	pr, err := netip.ParsePrefix(s)
	if err != nil {
		if a, err2 := netip.ParseAddr(s); err2 == nil {
			pr = netip.PrefixFrom(a, a.BitLen())
		} else {
			return fmt.Errorf("not a CIDR prefix: %q", s)
		}
	}
	*p = append(*p, pr.Masked())
	return nil
}

// replayArgs are replay's flags (own flags, no config file); the generated documents list
// them too (docs.go).
type replayArgs struct {
	in, out, lanOut, public string
	inside                  prefixList
	json                    bool
}

func (a *replayArgs) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.in, "in", "", "input capture (pcap or pcapng), taken on the inside")
	fs.StringVar(&a.out, "out", "", "output pcap: the outside view")
	fs.StringVar(&a.lanOut, "lan-out", "", "output pcap: the inside view after the round trip")
	fs.Var(&a.inside, "inside", "inside prefix (repeatable)")
	fs.StringVar(&a.public, "public-ip", "", "the gateway's public IPv4 address")
	fs.BoolVar(&a.json, "json", false, "print the summary as JSON")
	return fs
}

// cmdReplay runs the engine offline over a capture (DESIGN.md "replay").
func cmdReplay(args []string, stdout, stderr io.Writer) int {
	var a replayArgs
	fs := a.flagSet()
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "pptpgw replay: %v\n", err)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "pptpgw replay: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if a.in == "" || a.out == "" {
		return fail("--in and --out are required")
	}
	if len(a.inside) == 0 {
		return fail("--inside is required")
	}
	pub, err := netip.ParseAddr(a.public)
	if err != nil || !pub.Is4() {
		return fail("--public-ip: an IPv4 address is required, got %q", a.public)
	}
	f, err := os.Open(a.in)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	of, err := os.Create(a.out)
	if err != nil {
		return fail("%v", err)
	}
	var lw io.Writer
	var lf *os.File
	if a.lanOut != "" {
		if lf, err = os.Create(a.lanOut); err != nil {
			return fail("%v", err)
		}
		lw = lf
	}
	sum, err := replay.Run(f, of, lw, replay.Options{Inside: a.inside, Public: pub})
	if err == nil {
		err = of.Close()
	}
	if err == nil && lf != nil {
		err = lf.Close()
	}
	if err != nil {
		// No half-written outputs after a failure.
		of.Close()
		os.Remove(a.out)
		if lf != nil {
			lf.Close()
			os.Remove(a.lanOut)
		}
		return fail("%s: %v", a.in, err)
	}
	if a.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sum)
		return 0
	}
	printSummary(stdout, sum)
	return 0
}

func printSummary(w io.Writer, s *replay.Summary) {
	fmt.Fprintf(w, "packets in %d, out %d, skipped (not PPTP) %d\n", s.PacketsIn, s.PacketsOut, s.Skipped)
	reasons := make([]string, 0, len(s.Dropped))
	for r := range s.Dropped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "dropped %-24s %d\n", r, s.Dropped[r])
	}
	for _, c := range s.Calls {
		fmt.Fprintf(w, "call %-9s inside %s:%d  public %s:%d  peer %s:%d\n", c.Outcome,
			c.InsideAddr, c.InsideCallID, c.PublicAddr, c.OuterCallID, c.PeerAddr, c.PeerCallID)
	}
	if len(s.Calls) == 0 {
		fmt.Fprintln(w, strings.TrimSpace("no calls"))
	}
}
