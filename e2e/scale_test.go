//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// The scale study (`make bench-scale`, root; issue #5 item 4): the kernel's
// own PPTP helper and pptpgw (--gre-path bpf, kernel and queue) with 10, 1 000
// and 10 000 concurrent calls. The calls are set up by our own load client
// (e2e/cmd/pptpload, one control connection per call, as the kernel helper
// needs) against our own PAC (e2e/cmd/pacsim): pptpd cannot run 10 000 PPP
// peers, and the bench needs only the control channel. Measured per path and
// size: calls set up per second, GRE packets/s through the gateway at 64 B
// (gresend cycling over every call's Call ID, counted by a drop rule on the
// receiver, median of 3 runs of PPTPGW_E2E_BENCH_SECONDS, default 2), and
// memory per call. The table goes to PPTPGW_E2E_SCALE_OUT (default
// bench-scale.md).
//
// The kernel helper's GRE key map is a linear list scanned for every GRE
// packet (two entries per call), so its rate should fall with the calls;
// pptpgw's lookups are hash maps, so its rate should not.

const (
	scalePACBase    = 1    // pacsim's first Call ID: the PAC's Call IDs are 1..N
	scaleInsideBase = 1000 // pptpload's first Call ID
	scaleSize       = 64   // IPv4 total length of the measured GRE
	warmSize        = 100  // and of the warm-up GRE, which no counting rule matches
)

// scaleLab is one path's lab: the gateway (pptpgw, or the kernel's helper
// when gw is nil), pacsim behind it and the load clients started so far.
type scaleLab struct {
	name    string
	tp      *gwTopo
	gw      *lab.Gateway
	calls   int // calls held so far
	conns   int // and their control connections
	loads   int
	perConn int      // calls per control connection
	args    []string // pptpgw's flags
	plain   bool     // no NAT and no calls: the sender's and forwarding's own cost at N Call IDs
	inMAC   string   // the gateway's wan MAC: inbound GRE is sent to it
	outMAC  string   // its lan MAC
}

// startScaleLab builds the topology of newGWTopo with one client, starts
// pacsim on the server and the gateway of the path: the kernel helper when
// args is nil, else pptpgw with args; with plain, neither (nor NAT).
func startScaleLab(t *testing.T, name string, args []string, plain bool) *scaleLab {
	t.Helper()
	s := &scaleLab{name: name, tp: newGWTopo(t, 1), plain: plain}
	tp := s.tp
	switch {
	case plain:
		tp.gw.MustRun("iptables", "-t", "nat", "-F")
	case args == nil:
		tp.gw.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
	default:
		s.gw = tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, LogLevel: "info", Args: args})
	}
	tp.srv.Start("pacsim", lab.Build(t, lab.Module+"/e2e/cmd/pacsim"), "--listen", serverIP,
		"--call-id", strconv.Itoa(scalePACBase), "--status", tp.l.Path("pacsim.json"))
	tp.l.MustWaitFor("pacsim listening", func() error {
		var st struct{ Listening bool }
		if err := readJSON(tp.l.Path("pacsim.json"), &st); err != nil || !st.Listening {
			return fmt.Errorf("not yet: %v", err)
		}
		return nil
	}, 10*time.Second)
	// Both ends count the measured size and drop all GRE: nothing listens
	// for it, and an ICMP protocol-unreachable per packet would only add load.
	for _, ns := range []*lab.NS{tp.clients[0], tp.srv} {
		ns.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "gre", "-m", "length", "--length", strconv.Itoa(scaleSize), "-j", "DROP")
		ns.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "gre", "-j", "DROP")
	}
	s.inMAC, s.outMAC = macOf(t, tp.gw, "wan"), macOf(t, tp.gw, "lan")
	return s
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// loadReport is pptpload's status file.
type loadReport struct {
	State   string  `json:"state"`
	Calls   int     `json:"calls"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	Cleared int     `json:"cleared"`
	Error   string  `json:"error"`
}

// scaleConcurrency is pptpload's --concurrency: PPTPGW_E2E_SCALE_CONCURRENCY,
// default 64 control connections in setup at a time.
func scaleConcurrency() int {
	if n, err := strconv.Atoi(os.Getenv("PPTPGW_E2E_SCALE_CONCURRENCY")); err == nil && n > 0 {
		return n
	}
	return 64
}

// addCalls starts a pptpload with n more calls (perConn per control
// connection) and waits until it holds them all; it returns its report.
func (s *scaleLab) addCalls(t *testing.T, n, perConn int) (*lab.Proc, loadReport) {
	t.Helper()
	s.loads++
	status := s.tp.l.Path(fmt.Sprintf("load%d.json", s.loads))
	p := s.tp.clients[0].Start(fmt.Sprintf("pptpload%d", s.loads), lab.Build(t, lab.Module+"/e2e/cmd/pptpload"),
		"--server", serverIP, "--calls", strconv.Itoa(n), "--per-conn", strconv.Itoa(perConn),
		"--call-id", strconv.Itoa(scaleInsideBase+s.calls), "--concurrency", strconv.Itoa(scaleConcurrency()), "--status", status)
	var r loadReport
	s.tp.l.MustWaitFor(fmt.Sprintf("%s: %d calls set up by pptpload", s.name, n), func() error {
		if done, err := p.Exited(); done {
			return fmt.Errorf("pptpload exited: %v", err)
		}
		if err := readJSON(status, &r); err != nil || r.State != "holding" {
			return fmt.Errorf("not yet: %+v %v", r, err)
		}
		return nil
	}, 60*time.Second+time.Duration(n)*10*time.Millisecond)
	if r.Calls != n || r.Failed != 0 {
		t.Fatalf("%s: pptpload set up %d of %d calls, %d failed: %s", s.name, r.Calls, n, r.Failed, r.Error)
	}
	s.calls += n
	s.conns += (n + perConn - 1) / perConn
	return p, r
}

// floodGRE runs gresend and returns what it sent and for how long.
func floodGRE(t *testing.T, from *lab.NS, args ...string) (sent uint64, secs float64) {
	t.Helper()
	o := from.MustRun(append([]string{lab.Build(t, lab.Module+"/e2e/cmd/gresend"), "--ifname", "eth0"}, args...)...)
	var r struct {
		Sent    uint64  `json:"sent"`
		Seconds float64 `json:"seconds"`
	}
	if err := json.Unmarshal([]byte(o), &r); err != nil || r.Sent == 0 {
		t.Fatalf("gresend: %v: %s", err, o)
	}
	return r.Sent, r.Seconds
}

// warmUp sends every call one outbound GRE packet (twice over). Only the
// kernel helper needs it: its expectations become GRE conntrack entries on
// a call's first packet, and only those carry the NAT'd Call ID inbound.
func (s *scaleLab) warmUp(t *testing.T) {
	t.Helper()
	n := strconv.Itoa(s.calls)
	floodGRE(t, s.tp.clients[0], "--dst-mac", s.outMAC, "--src", clientIP(0), "--dst", serverIP,
		"--call-id", strconv.Itoa(scalePACBase), "--call-ids", n, "--count", strconv.Itoa(2*s.calls),
		"--size", strconv.Itoa(warmSize), "--duration", "30s")
}

// greKeyLine is one GRE conntrack entry: the original direction's dstkey
// (the PAC's Call ID) and the reply direction's (what the PAC's GRE to the
// public address carries: the NAT'd Call ID).
var greKeyLine = regexp.MustCompile(`(?m)^gre .*dstkey=0x([0-9a-f]+).*dstkey=0x([0-9a-f]+)`)

// inboundIDs returns the Call ID every call's inbound GRE carries, learned
// from the gateway: pptpgw's outer Call IDs, or the kernel helper's GRE
// conntrack entries. It fails unless there is one per call.
func (s *scaleLab) inboundIDs(t *testing.T) []uint16 {
	t.Helper()
	var ids []uint16
	if s.gw != nil {
		calls := waitCalls(s.tp.l, s.gw, s.calls, nil, 30*time.Second)
		for _, c := range calls {
			ids = append(ids, c.OuterCallID)
		}
	} else {
		// A warm-up packet lost on the way leaves its call without an
		// entry: send another pass then.
		for try := 0; ; try++ {
			ids = ids[:0]
			out := conntrackList(t, s.tp.gw, "-L", "-p", "gre")
			for _, m := range greKeyLine.FindAllStringSubmatch(out, -1) {
				v, _ := strconv.ParseUint(m[2], 16, 16)
				ids = append(ids, uint16(v))
			}
			if len(ids) == s.calls || try == 4 {
				break
			}
			t.Logf("%s: %d GRE conntrack entries for %d calls: warming up again", s.name, len(ids), s.calls)
			s.warmUp(t)
		}
	}
	slices.Sort(ids)
	if len(ids) != s.calls || len(slices.Compact(slices.Clone(ids))) != s.calls {
		t.Fatalf("%s: %d distinct inbound Call IDs of %d for %d calls", s.name, len(slices.Compact(slices.Clone(ids))), len(ids), s.calls)
	}
	return ids
}

// controlConns counts the gateway's tracked control connections in the
// ESTABLISHED state.
func (s *scaleLab) controlConns(t *testing.T) int {
	t.Helper()
	out := conntrackList(t, s.tp.gw, "-L", "-p", "tcp", "--dport", "1723", "--state", "ESTABLISHED")
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "tcp ") {
			n++
		}
	}
	return n
}

// daemonCPU returns the CPU seconds pptpgw has used so far (0 for the
// kernel helper): user and system time from /proc/PID/stat, in the
// kernel's 100 Hz clock ticks.
func (s *scaleLab) daemonCPU() float64 {
	if s.gw == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.gw.Pid()))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are fields 14 and 15 of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	sys, _ := strconv.ParseFloat(f[12], 64)
	return (u + sys) / 100
}

// conntrackList runs conntrack in ns and returns its stdout alone: the
// summary it prints on stderr ("N flow entries have been shown") would
// land in the middle of a line of a long listing.
func conntrackList(t *testing.T, ns *lab.NS, args ...string) string {
	t.Helper()
	out, err := ns.Command(append([]string{"conntrack"}, args...)...).Output()
	if err != nil {
		t.Fatalf("conntrack %s in %s: %v", strings.Join(args, " "), ns.Name, err)
	}
	return string(out)
}

// slabBytes is the memory in the kernel's conntrack caches: objects in use
// times their slab size, for nf_conntrack and nf_conntrack_expect (a merged
// cache on these kernels, hence /sys/kernel/slab, not /proc/slabinfo). The
// conntrack extensions (NAT, helper data) and the GRE key map come from
// kmalloc and are not counted.
func slabBytes(t *testing.T) float64 {
	t.Helper()
	total := 0.0
	for _, c := range []string{"nf_conntrack", "nf_conntrack_expect"} {
		var v [2]float64
		for i, f := range []string{"objects", "slab_size"} {
			b, err := os.ReadFile(filepath.Join("/sys/kernel/slab", c, f))
			if err != nil {
				t.Fatalf("slab %s: %v", c, err)
			}
			v[i], _ = strconv.ParseFloat(strings.Fields(string(b))[0], 64)
		}
		total += v[0] * v[1]
	}
	return total
}

// raiseSysctl sets a netfilter sysctl to at least min for the test and
// restores it afterwards. nf_conntrack_max and nf_conntrack_expect_max are
// global: read-only inside a network namespace (kernel 6.18), so they are
// written in the initial namespace, which the test runs in.
func raiseSysctl(t *testing.T, name string, min int) {
	t.Helper()
	path := "/proc/sys/net/netfilter/" + name
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	old := strings.TrimSpace(string(b))
	if v, _ := strconv.Atoi(old); v >= min {
		return
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(min)), 0o644); err != nil {
		t.Fatalf("raise %s to %d: %v", name, min, err)
	}
	t.Logf("%s raised from %s to %d for the test", name, old, min)
	t.Cleanup(func() {
		if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
			t.Errorf("restore %s: %v", name, err)
		}
	})
}

// scaleRow is one path's results.
type scaleRow struct {
	in, out     map[int][]float64 // calls -> received pps per run
	setup       map[int]float64   // calls -> setup rate of the step that reached them
	heap, rss   map[int]float64   // pptpgw only: daemon's in-use heap and RSS at each size
	mapped      map[int]uint64    // --gre-path kernel: calls in the nft maps at each size
	slabPerCall map[int]float64   // calls -> conntrack slab bytes per call added in that step
}

func TestScale(t *testing.T) {
	if os.Getenv("PPTPGW_E2E_SCALE") == "" {
		t.Skip("the scale bench runs with `make bench-scale` (PPTPGW_E2E_SCALE=1)")
	}
	secs := 2.0
	if v := os.Getenv("PPTPGW_E2E_BENCH_SECONDS"); v != "" {
		secs, _ = strconv.ParseFloat(v, 64)
	}
	sizes := []int{10, 1000, 10000}
	if v := os.Getenv("PPTPGW_E2E_SCALE_SIZES"); v != "" { // e.g. 10,200 while developing
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
				t.Fatalf("PPTPGW_E2E_SCALE_SIZES %q: want rising call counts", v)
			}
			sizes = append(sizes, n)
		}
	}
	const runs = 3
	maxCalls := sizes[len(sizes)-1]
	limit := strconv.Itoa(2*maxCalls + 100) // room for the tombstones of ended calls too
	type scalePath struct {
		name    string
		args    []string // pptpgw's; nil: the kernel's helper
		perConn int      // calls per control connection
		plain   bool
	}
	paths := []scalePath{
		// The reference for the ratios: the sender cycles over as many
		// frames, and the caches see as many flows, with no NAT at all.
		{"plain forwarding (no calls, N Call IDs)", nil, 0, true},
		{"kernel PPTP helper", nil, 1, false},
		{"pptpgw --gre-path bpf", []string{"--gre-path", "bpf", "--max-calls", limit, "--max-calls-per-inside", limit}, 1, false},
		{"pptpgw --gre-path kernel", []string{"--gre-path", "kernel", "--max-calls", limit, "--max-calls-per-inside", limit}, 1, false},
		{"pptpgw --gre-path queue", []string{"--gre-path", "queue", "--max-calls", limit, "--max-calls-per-inside", limit}, 1, false},
		// What a call costs without a control connection of its own (the
		// kernel helper cannot do this: one call per connection).
		{"pptpgw --gre-path kernel, 100 calls per control connection", []string{"--gre-path", "kernel", "--max-calls", limit, "--max-calls-per-inside", limit}, 100, false},
	}
	if f := os.Getenv("PPTPGW_E2E_SCALE_PATHS"); f != "" { // names containing any of the comma-separated words
		paths = slices.DeleteFunc(paths, func(p scalePath) bool {
			for _, w := range strings.Split(f, ",") {
				if strings.Contains(p.name, w) {
					return false
				}
			}
			return true
		})
	}
	// The kernel helper: two expectations per call until its first GRE
	// packet; a TCP and a GRE entry per call after.
	raiseSysctl(t, "nf_conntrack_expect_max", 2*maxCalls+1024)
	raiseSysctl(t, "nf_conntrack_max", 4*maxCalls+65536)

	// Every path's lab is set up first and kept; each size is then reached
	// on every path in turn and measured there, so that a change in the
	// machine's load hits the paths alike.
	labs := make([]*scaleLab, len(paths))
	rows := make([]*scaleRow, len(paths))
	for i, p := range paths {
		labs[i] = startScaleLab(t, p.name, p.args, p.plain)
		labs[i].perConn, labs[i].args = p.perConn, p.args
		rows[i] = &scaleRow{in: map[int][]float64{}, out: map[int][]float64{}, setup: map[int]float64{},
			heap: map[int]float64{}, rss: map[int]float64{}, slabPerCall: map[int]float64{}, mapped: map[int]uint64{}}
	}
	for _, size := range sizes {
		idFiles := make([]string, len(labs))
		for i, s := range labs {
			row := rows[i]
			if s.plain {
				var b strings.Builder
				for id := range size {
					fmt.Fprintln(&b, scaleInsideBase+id)
				}
				idFiles[i] = s.tp.l.Path(fmt.Sprintf("in-ids-%d.txt", size))
				if err := os.WriteFile(idFiles[i], []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			added := size - s.calls
			slab0 := slabBytes(t)
			profiled := s.profileSetup(t, size)
			_, r := s.addCalls(t, added, s.perConn)
			profiled()
			row.setup[size] = r.Rate
			if n := s.controlConns(t); n != s.conns {
				t.Errorf("%s: %d tracked control connections, want %d", s.name, n, s.conns)
			}
			if s.gw == nil {
				exp := conntrackList(t, s.tp.gw, "-L", "expect")
				t.Logf("%s: %d expectations before the warm-up", s.name, strings.Count(exp, "proto=47"))
			}
			s.warmUp(t)
			ids := s.inboundIDs(t)
			row.slabPerCall[size] = (slabBytes(t) - slab0) / float64(added)
			var b strings.Builder
			for _, id := range ids {
				fmt.Fprintln(&b, id)
			}
			idFiles[i] = s.tp.l.Path(fmt.Sprintf("in-ids-%d.txt", size))
			if err := os.WriteFile(idFiles[i], []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			if s.gw != nil {
				heap, err := s.gw.LiveHeap()
				if err != nil {
					t.Fatal(err)
				}
				row.heap[size] = float64(heap)
				if dir := os.Getenv("PPTPGW_E2E_SCALE_PROFILES"); dir != "" {
					f := filepath.Join(dir, fmt.Sprintf("heap-%s-%d.pprof", strings.Join(strings.Fields(s.name), "_"), size))
					if err := s.gw.HeapProfile(f); err != nil {
						t.Error(err)
					}
				}
				rss, _ := s.gw.RSS()
				row.rss[size] = float64(rss)
				for _, path := range []string{"kernel", "bpf"} {
					if !slices.Contains(s.args, path) {
						continue
					}
					st := s.gw.MustStats()
					row.mapped[size] = st["gre_"+path+"_calls"]
					if st["gre_"+path+"_calls"] != uint64(size) {
						// Then GRE of the other calls goes through the queues,
						// and the row measures a mix of the two paths.
						t.Logf("%s: WARNING: %d of %d calls in the %s maps (gre_%s_errors %d; see the daemon log)",
							s.name, st["gre_"+path+"_calls"], size, path, path, st["gre_"+path+"_errors"])
					}
				}
			}
			t.Logf("%s: %d calls (%d added in %.2fs, %.0f calls/s); conntrack slab +%.0f B per added call; heap %.0f B, RSS %.0f B",
				s.name, size, added, r.Seconds, r.Rate, row.slabPerCall[size], row.heap[size], row.rss[size])
		}
		for range runs {
			for i, s := range labs {
				row := rows[i]
				for _, dir := range []string{"inbound", "outbound"} {
					dst := publicIP
					if s.plain {
						dst = clientIP(0)
					}
					from, to, args := s.tp.srv, s.tp.clients[0], []string{"--dst-mac", s.inMAC, "--src", serverIP, "--dst", dst, "--call-id-file", idFiles[i]}
					if dir == "outbound" {
						from, to = s.tp.clients[0], s.tp.srv
						args = []string{"--dst-mac", s.outMAC, "--src", clientIP(0), "--dst", serverIP,
							"--call-id", strconv.Itoa(scalePACBase), "--call-ids", strconv.Itoa(size)}
					}
					before, cpu0 := dropCount(t, to, scaleSize), s.daemonCPU()
					sent, sec := floodGRE(t, from, append(args, "--size", strconv.Itoa(scaleSize), "--duration", fmt.Sprintf("%gs", secs))...)
					time.Sleep(300 * time.Millisecond) // the last packets drain
					got := dropCount(t, to, scaleSize) - before
					cpu := (s.daemonCPU() - cpu0) / (sec + 0.3)
					pps := float64(got) / sec
					if dir == "inbound" {
						row.in[size] = append(row.in[size], pps)
					} else {
						row.out[size] = append(row.out[size], pps)
					}
					t.Logf("%s, %d calls, %s: sent %d, received %d (%.0f pps, loss %.0f%%), daemon CPU %.0f%%",
						s.name, size, dir, sent, got, pps, 100*(1-float64(got)/float64(sent)), 100*cpu)
				}
			}
		}
	}
	// The calls must all still be there after the runs.
	for _, s := range labs {
		if s.gw != nil {
			waitCalls(s.tp.l, s.gw, s.calls, nil, 30*time.Second)
		}
		if n := s.controlConns(t); n != s.conns {
			t.Errorf("%s: %d control connections after the runs, want %d", s.name, n, s.conns)
		}
	}

	out := scaleTable(paths2names(labs), rows, sizes, runs, secs)
	t.Logf("\n%s", out)
	outPath := os.Getenv("PPTPGW_E2E_SCALE_OUT")
	if outPath == "" {
		outPath = "bench-scale.md"
	}
	if err := os.WriteFile(outPath, []byte(out), 0o644); err != nil {
		t.Error(err)
	}
}

func paths2names(labs []*scaleLab) []string {
	var n []string
	for _, s := range labs {
		n = append(n, s.name)
	}
	return n
}

// scaleTable renders the results: inbound and outbound packets/s at each
// size with the ratio of the largest to the smallest, the setup rate of the
// largest step, and memory per call.
func scaleTable(names []string, rows []*scaleRow, sizes []int, runs int, secs float64) string {
	lo, hi := sizes[0], sizes[len(sizes)-1]
	var b strings.Builder
	fmt.Fprintf(&b, "GRE packets/s (64 B) received through the gateway with N calls up, the sender cycling over every call's Call ID: "+
		"median of %d runs of %gs; ratio = the rate at %d calls / the rate at %d. "+
		"Setup: calls set up per second by pptpload (one control connection per call unless the row says otherwise, %d connections in setup at a time) in the step to %d calls. "+
		"pptpgw heap: the daemon's live Go heap (HeapAlloc right after a GC, from the admin socket's /debug/pprof/heap?gc=1, least of 5 readings) and RSS, (at %d calls - at %d) / %d. "+
		"conntrack slab: the kernel's nf_conntrack and nf_conntrack_expect objects in use x slab size, per call added in the step to %d calls "+
		"(machine-wide, so other jobs add noise; conntrack extensions and the GRE key map come from kmalloc and are not counted). "+
		"The sender (gresend) runs on the same machine as the gateway.\n\n",
		runs, secs, hi, lo, scaleConcurrency(), hi, hi, lo, hi-lo, hi)
	for _, dir := range []string{"inbound", "outbound"} {
		fmt.Fprintf(&b, "| path (%s) |", dir)
		for _, s := range sizes {
			fmt.Fprintf(&b, " %d calls |", s)
		}
		b.WriteString(" ratio |")
		if dir == "inbound" {
			b.WriteString(" setup calls/s | pptpgw heap B/call | conntrack slab B/call | calls in nft maps |")
		}
		b.WriteString("\n|---|")
		for range len(sizes) + 1 {
			b.WriteString("---|")
		}
		if dir == "inbound" {
			b.WriteString("---|---|---|---|")
		}
		b.WriteString("\n")
		for i, name := range names {
			r := rows[i]
			v := r.in
			if dir == "outbound" {
				v = r.out
			}
			fmt.Fprintf(&b, "| %s |", name)
			for _, s := range sizes {
				fmt.Fprintf(&b, " %.0fk |", median(v[s])/1000)
			}
			ratio := "-"
			if m := median(v[lo]); m > 0 {
				ratio = fmt.Sprintf("%.2f", median(v[hi])/m)
			}
			fmt.Fprintf(&b, " %s |", ratio)
			if dir == "inbound" {
				heap := "-"
				if r.heap[hi] > 0 {
					heap = fmt.Sprintf("%.0f (RSS %.0f)", (r.heap[hi]-r.heap[lo])/float64(hi-lo), (r.rss[hi]-r.rss[lo])/float64(hi-lo))
				}
				mapped := "-"
				if len(r.mapped) > 0 {
					var m []string
					for _, s := range sizes {
						m = append(m, fmt.Sprintf("%d/%d", r.mapped[s], s))
					}
					mapped = strings.Join(m, ", ")
				}
				setup, slab := "-", "-"
				if r.setup[hi] > 0 {
					setup, slab = fmt.Sprintf("%.0f", r.setup[hi]), fmt.Sprintf("%.0f", r.slabPerCall[hi])
				}
				fmt.Fprintf(&b, " %s | %s | %s | %s |", setup, heap, slab, mapped)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestLoadCalls runs the scale bench's tools small, in `make e2e`: pptpload
// sets up 20 calls (5 per control connection) through pptpgw to pacsim, they
// show up in `calls` with the Call IDs both ends chose, gresend's round
// robin reaches every call both ways, and SIGTERM clears them all.
func TestLoadCalls(t *testing.T) {
	const n = 20
	s := startScaleLab(t, "pptpgw", []string{"--gre-path", "queue"}, false)
	p, _ := s.addCalls(t, n, 5)
	calls := waitCalls(s.tp.l, s.gw, n, func(calls []lab.GWCall) error {
		seen := map[uint16]bool{}
		for _, c := range calls {
			if c.InsideCallID < scaleInsideBase || c.InsideCallID >= scaleInsideBase+n ||
				c.PeerCallID < scalePACBase || c.PeerCallID >= scalePACBase+n || seen[c.OuterCallID] {
				return fmt.Errorf("call %s: Call IDs out of range or outer Call ID twice", c)
			}
			seen[c.OuterCallID] = true
		}
		return nil
	}, 10*time.Second)
	var st struct{ Connections, Calls int }
	if err := readJSON(s.tp.l.Path("pacsim.json"), &st); err != nil || st.Connections != n/5 || st.Calls != n {
		t.Errorf("pacsim saw %+v (%v), want %d connections and %d calls", st, err, n/5, n)
	}
	var ids strings.Builder
	for _, c := range calls {
		fmt.Fprintln(&ids, c.OuterCallID)
	}
	idFile := s.tp.l.Path("in-ids.txt")
	if err := os.WriteFile(idFile, []byte(ids.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	floodGRE(t, s.tp.srv, "--dst-mac", s.inMAC, "--src", serverIP, "--dst", publicIP, "--call-id-file", idFile,
		"--count", strconv.Itoa(2*n), "--size", strconv.Itoa(scaleSize))
	floodGRE(t, s.tp.clients[0], "--dst-mac", s.outMAC, "--src", clientIP(0), "--dst", serverIP,
		"--call-id", strconv.Itoa(scalePACBase), "--call-ids", strconv.Itoa(n), "--count", strconv.Itoa(2*n), "--size", strconv.Itoa(scaleSize))
	waitCalls(s.tp.l, s.gw, n, func(calls []lab.GWCall) error {
		for _, c := range calls {
			if c.PacketsIn == 0 || c.PacketsOut == 0 {
				return fmt.Errorf("call %s: no GRE one way", c)
			}
		}
		return nil
	}, 5*time.Second)
	if got := dropCount(t, s.tp.clients[0], scaleSize); got < n {
		t.Errorf("client received %d inbound GRE packets, want at least %d", got, n)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Errorf("pptpload: %v", err)
	}
	var r loadReport
	if err := readJSON(s.tp.l.Path("load1.json"), &r); err != nil || r.State != "done" || r.Cleared != n {
		t.Errorf("pptpload after SIGTERM: %+v (%v), want %d cleared", r, err, n)
	}
	s.tp.l.MustWaitFor("no established call left", func() error {
		calls, err := s.gw.Calls()
		if err != nil {
			return err
		}
		for _, c := range calls {
			if c.State == "established" {
				return fmt.Errorf("still up: %s", callList(calls))
			}
		}
		return nil
	}, 5*time.Second)
}

// profileSetup takes the daemon's CPU profile and, where perf is
// installed, the whole machine's (perf record -a -g) during the first 3 s
// of the step to size calls, into PPTPGW_E2E_SCALE_PROFILES when it is
// set; the returned function waits for them.
func (s *scaleLab) profileSetup(t *testing.T, size int) (wait func()) {
	dir := os.Getenv("PPTPGW_E2E_SCALE_PROFILES")
	if dir == "" || size < 1000 {
		return func() {}
	}
	name := fmt.Sprintf("%s-%d", strings.Join(strings.Fields(s.name), "_"), size)
	var wg sync.WaitGroup
	if s.gw != nil {
		wg.Go(func() {
			if err := s.gw.CPUProfile(filepath.Join(dir, "cpu-setup-"+name+".pprof"), 3); err != nil {
				t.Error(err)
			}
		})
	}
	if perf, err := exec.LookPath("perf"); err == nil {
		wg.Go(func() {
			out := filepath.Join(dir, "perf-setup-"+name+".data")
			if o, err := exec.Command(perf, "record", "-a", "-g", "-q", "-o", out, "--", "sleep", "3").CombinedOutput(); err != nil {
				t.Errorf("perf record: %v: %s", err, o)
			}
		})
	}
	return wg.Wait
}
