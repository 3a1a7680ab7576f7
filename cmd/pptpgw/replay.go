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

// cmdReplay runs the engine offline over a capture (DESIGN.md "replay").
func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	in := fs.String("in", "", "input capture (pcap or pcapng), taken on the inside")
	out := fs.String("out", "", "output pcap: the outside view")
	lanOut := fs.String("lan-out", "", "output pcap: the inside view after the round trip")
	var inside prefixList
	fs.Var(&inside, "inside", "inside prefix (repeatable)")
	public := fs.String("public-ip", "", "the gateway's public IPv4 address")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
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
	if *in == "" || *out == "" {
		return fail("--in and --out are required")
	}
	if len(inside) == 0 {
		return fail("--inside is required")
	}
	pub, err := netip.ParseAddr(*public)
	if err != nil || !pub.Is4() {
		return fail("--public-ip: an IPv4 address is required, got %q", *public)
	}
	f, err := os.Open(*in)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	of, err := os.Create(*out)
	if err != nil {
		return fail("%v", err)
	}
	var lw io.Writer
	var lf *os.File
	if *lanOut != "" {
		if lf, err = os.Create(*lanOut); err != nil {
			return fail("%v", err)
		}
		lw = lf
	}
	sum, err := replay.Run(f, of, lw, replay.Options{Inside: inside, Public: pub})
	if err == nil {
		err = of.Close()
	}
	if err == nil && lf != nil {
		err = lf.Close()
	}
	if err != nil {
		// No half-written outputs after a failure.
		of.Close()
		os.Remove(*out)
		if lf != nil {
			lf.Close()
			os.Remove(*lanOut)
		}
		return fail("%s: %v", *in, err)
	}
	if *asJSON {
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
