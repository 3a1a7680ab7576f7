//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// The side-by-side GRE throughput benchmark (`make bench-e2e`, root): a
// Go sender on AF_PACKET (e2e/cmd/gresend) floods the gateway with GRE of
// one live call, and a drop rule on the receiving end counts what came
// through. Paths: plain forwarding, the kernel's own PPTP helper, pptpgw
// with --gre-path bpf, kernel and queue; 64 and 1400-byte
// packets (IPv4 total length), inbound (server to the public address) and
// outbound (client to server); the median of 3 runs of PPTPGW_E2E_BENCH_SECONDS
// (default 2) each. The table goes to PPTPGW_E2E_BENCH_OUT (default
// bench-e2e.md). The machine is shared: numbers are noisy, compare the
// ratios of one run.

type benchPath struct {
	name string
	// setup prepares the gateway and returns the inbound and outbound
	// Call IDs to send (inbound: what the peer puts in GRE to the public
	// address; outbound: the peer's Call ID).
	setup func(t *testing.T, tp *gwTopo) (in, out uint16)
	plain bool // no NAT: inbound is sent to the inside address directly
}

var kernelGREKeys = regexp.MustCompile(`dstkey=0x([0-9a-f]+).*dstkey=0x([0-9a-f]+)`)

func liveCall(t *testing.T, tp *gwTopo) {
	t.Helper()
	srv := tp.srv.StartPPTPD(lab.PPTPDConfig{})
	pc := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	waitEchoes(tp.l, "a live call", []end{{"pptp1", pc.Status}}, srv, 1, 20*time.Second)
}

func pptpgwCall(t *testing.T, tp *gwTopo, path string) (uint16, uint16) {
	t.Helper()
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info", Args: []string{"--gre-path", path}})
	liveCall(t, tp)
	c := waitCalls(tp.l, gw, 1, nil, 5*time.Second)[0]
	return c.OuterCallID, c.PeerCallID
}

var benchPaths = []benchPath{
	{name: "plain forwarding", plain: true, setup: func(t *testing.T, tp *gwTopo) (uint16, uint16) {
		tp.gw.MustRun("iptables", "-t", "nat", "-F")
		return 1, 1
	}},
	{name: "kernel PPTP helper, live call", setup: func(t *testing.T, tp *gwTopo) (uint16, uint16) {
		tp.gw.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
		liveCall(t, tp)
		var in, out uint16
		tp.l.MustWaitFor("the call's GRE entry in conntrack", func() error {
			o, err := tp.gw.Run("conntrack", "-L", "-p", "gre")
			if err != nil {
				return err
			}
			m := kernelGREKeys.FindStringSubmatch(o)
			if m == nil {
				return fmt.Errorf("no GRE entry: %s", o)
			}
			a, _ := strconv.ParseUint(m[1], 16, 16)
			b, _ := strconv.ParseUint(m[2], 16, 16)
			out, in = uint16(a), uint16(b)
			return nil
		}, 5*time.Second)
		return in, out
	}},
	{name: "pptpgw --gre-path bpf", setup: func(t *testing.T, tp *gwTopo) (uint16, uint16) { return pptpgwCall(t, tp, "bpf") }},
	{name: "pptpgw --gre-path queue", setup: func(t *testing.T, tp *gwTopo) (uint16, uint16) { return pptpgwCall(t, tp, "queue") }},
	{name: "pptpgw --gre-path kernel", setup: func(t *testing.T, tp *gwTopo) (uint16, uint16) { return pptpgwCall(t, tp, "kernel") }},
}

type benchCell struct {
	pps  []float64 // received per second, per run
	loss []float64 // 1 - received/sent
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func best(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func macOf(t *testing.T, ns *lab.NS, ifname string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(ns.IP("-j", "link", "show", ifname)), &links); err != nil || len(links) != 1 {
		t.Fatalf("mac of %s: %v", ifname, err)
	}
	return links[0].Address
}

// dropCount returns the packets dropped so far by the receiver's counting
// rule for size.
func dropCount(t *testing.T, ns *lab.NS, size int) uint64 {
	t.Helper()
	out := ns.MustRun("iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "DROP" && strings.Contains(line, "length "+strconv.Itoa(size)) {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no counting rule for %d bytes in %s:\n%s", size, ns.Name, out)
	return 0
}

func TestBenchGRE(t *testing.T) {
	if os.Getenv("PPTPGW_E2E_BENCH") == "" {
		t.Skip("the throughput benchmark runs with `make bench-e2e` (PPTPGW_E2E_BENCH=1)")
	}
	secs := 2.0
	if s := os.Getenv("PPTPGW_E2E_BENCH_SECONDS"); s != "" {
		secs, _ = strconv.ParseFloat(s, 64)
	}
	const runs = 3
	sizes := []int{64, 1400}
	dirs := []string{"inbound", "outbound"}
	if d := os.Getenv("PPTPGW_E2E_BENCH_DIRS"); d != "" {
		dirs = strings.Split(d, ",") // one direction, for profiling
	}
	res := map[string]*benchCell{}
	key := func(p, d string, size int) string { return fmt.Sprintf("%s|%s|%d", p, d, size) }
	sender := lab.Build(t, lab.Module+"/e2e/cmd/gresend")
	// Every path gets its lab of its own, all set up first; the runs then
	// take the paths in turn, so that a change in the machine's load hits
	// them alike.
	type target struct {
		from, to      *lab.NS
		mac, src, dst string
		id            uint16
	}
	targets := map[string]target{}
	paths := benchPaths
	if f := os.Getenv("PPTPGW_E2E_BENCH_PATHS"); f != "" {
		// a subset, for profiling one path: names containing any of the
		// comma-separated words; the reference path is kept for the ratios
		paths = nil
		for i, p := range benchPaths {
			keep := i == 1 && os.Getenv("PPTPGW_E2E_BENCH_NOREF") == ""
			for _, w := range strings.Split(f, ",") {
				keep = keep || strings.Contains(p.name, w)
			}
			if keep {
				paths = append(paths, p)
			}
		}
	}
	for _, p := range paths {
		tp := newGWTopo(t, 1)
		in, out := p.setup(t, tp)
		c1 := tp.clients[0]
		for _, size := range sizes {
			for _, ns := range []*lab.NS{c1, tp.srv} {
				ns.MustRun("iptables", "-t", "raw", "-I", "PREROUTING", "-p", "gre", "-m", "length", "--length", strconv.Itoa(size), "-j", "DROP")
			}
		}
		dst := publicIP
		if p.plain {
			dst = clientIP(0)
		}
		targets[p.name+"|inbound"] = target{tp.srv, c1, macOf(t, tp.gw, "wan"), serverIP, dst, in}
		targets[p.name+"|outbound"] = target{c1, tp.srv, macOf(t, tp.gw, "lan"), clientIP(0), serverIP, out}
	}
	for _, d := range dirs {
		for _, size := range sizes {
			for range runs {
				for _, p := range paths {
					tg := targets[p.name+"|"+d]
					cell := res[key(p.name, d, size)]
					if cell == nil {
						cell = &benchCell{}
						res[key(p.name, d, size)] = cell
					}
					before := dropCount(t, tg.to, size)
					o := tg.from.MustRun(sender, "--ifname", "eth0", "--dst-mac", tg.mac, "--src", tg.src, "--dst", tg.dst,
						"--call-id", strconv.Itoa(int(tg.id)), "--size", strconv.Itoa(size),
						"--duration", fmt.Sprintf("%gs", secs))
					time.Sleep(300 * time.Millisecond) // the last packets drain
					got := dropCount(t, tg.to, size) - before
					var r struct {
						Sent    uint64  `json:"sent"`
						Seconds float64 `json:"seconds"`
					}
					if err := json.Unmarshal([]byte(o), &r); err != nil || r.Sent == 0 {
						t.Fatalf("gresend: %v: %s", err, o)
					}
					cell.pps = append(cell.pps, float64(got)/r.Seconds)
					cell.loss = append(cell.loss, 1-float64(got)/float64(r.Sent))
					t.Logf("%s %s %d B: sent %d, received %d (%.0f pps)", p.name, d, size, r.Sent, got, float64(got)/r.Seconds)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GRE packets per second received through the gateway: median of %d runs of %gs (best run in brackets: the sender shares the CPUs, so a starved run says little); loss = 1 - received/sent; ratio of the medians to the kernel's PPTP helper (and to plain forwarding). The sender (gresend) runs on the same machine as the gateway.\n\n", runs, secs)
	fmt.Fprintf(&b, "| path |")
	for _, d := range dirs {
		for _, s := range sizes {
			fmt.Fprintf(&b, " %s %d B |", d, s)
		}
	}
	b.WriteString("\n|---|")
	for range len(dirs) * len(sizes) {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	ref := benchPaths[1].name
	for _, p := range paths {
		fmt.Fprintf(&b, "| %s |", p.name)
		for _, d := range dirs {
			for _, s := range sizes {
				c, r, pl := res[key(p.name, d, s)], res[key(ref, d, s)], res[key(benchPaths[0].name, d, s)]
				if c == nil {
					b.WriteString(" - |")
					continue
				}
				ratio := "-"
				if r != nil && median(r.pps) > 0 {
					ratio = fmt.Sprintf("%.2fx", median(c.pps)/median(r.pps))
				}
				if pl != nil && median(pl.pps) > 0 {
					ratio += fmt.Sprintf(" (%.2fx plain)", median(c.pps)/median(pl.pps))
				}
				fmt.Fprintf(&b, " %.0fk (best %.0fk) pps, loss %.0f%%, %s |", median(c.pps)/1000, best(c.pps)/1000, 100*median(c.loss), ratio)
			}
		}
		b.WriteString("\n")
	}
	t.Logf("\n%s", b.String())
	outPath := os.Getenv("PPTPGW_E2E_BENCH_OUT")
	if outPath == "" {
		outPath = "bench-e2e.md"
	}
	if err := os.WriteFile(outPath, []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
	if svgPath := os.Getenv("PPTPGW_E2E_BENCH_SVG"); svgPath != "" {
		var groups, names []string
		type gk struct {
			d    string
			size int
		}
		var gks []gk
		for _, d := range dirs {
			for _, s := range sizes {
				groups = append(groups, fmt.Sprintf("%s, %d B", d, s))
				gks = append(gks, gk{d, s})
			}
		}
		refIdx := 0
		for i, p := range paths {
			names = append(names, p.name)
			if p.name == ref {
				refIdx = i
			}
		}
		svg := benchSVG(fmt.Sprintf("GRE packets/s through the gateway (median of %d runs of %gs)", runs, secs), groups, names,
			func(g, p int) float64 {
				if c := res[key(paths[p].name, gks[g].d, gks[g].size)]; c != nil {
					return median(c.pps)
				}
				return 0
			}, refIdx)
		if err := os.WriteFile(svgPath, []byte(svg), 0o644); err != nil {
			t.Error(err)
		}
	}
}
