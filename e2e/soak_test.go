//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// The soak (`make soak`, issue 12 item 8): for E2E_SOAK_DURATION, pptpload
// workers set calls up through pptpgw to pacsim, hold them and clear them
// again, a few hundred at a time; gresend puts GRE on the live calls both
// ways at a steady rate; the daemon is restarted every period, SIGTERM and
// SIGKILL in turn; the operator's firewall is reloaded once (iptables-restore
// of the lab's own ruleset, without pptpgw's chains). It asserts that no call
// died but by its own teardown (every pptpload run clears every call it set
// up, and every call held across a restart is in the restarted daemon's
// table), that the rules came back, and that goroutines, file descriptors,
// heap and RSS do not grow; it prints a summary table.

const (
	soakWorkers  = 6  // pptpload runs at a time
	soakCalls    = 50 // calls per run
	soakPerConn  = 5  // calls per control connection
	soakGREPerCS = 2  // GRE packets per call and second, each way
	// soakGREIdle ends the calls whose teardown passed while the firewall
	// reload had removed pptpgw's rules (the daemon never saw it).
	soakGREIdle = 30 * time.Second
)

// soakConfig is the run's shape, from E2E_SOAK_DURATION.
type soakConfig struct {
	dur, period, warm, sample time.Duration
	path                      string
}

func soakConfigFromEnv(t *testing.T) soakConfig {
	v := os.Getenv("E2E_SOAK_DURATION")
	if v == "" {
		t.Skip("the soak runs with E2E_SOAK_DURATION set (make soak)")
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 30*time.Second {
		t.Fatalf("E2E_SOAK_DURATION %q: want a duration of at least 30s", v)
	}
	c := soakConfig{dur: dur, period: min(2*time.Minute, dur/3), path: "kernel"}
	if p := os.Getenv("E2E_SOAK_GRE_PATH"); p != "" {
		c.path = p
	}
	c.warm = min(30*time.Second, c.period/2)
	c.sample = min(max(c.period/30, 2*time.Second), 5*time.Second)
	return c
}

// soak is one run's state, shared by its goroutines.
type soak struct {
	t        *testing.T
	cfg      soakConfig
	tp       *gwTopo
	gw       *lab.Gateway
	inMAC    string
	outMAC   string
	deadline time.Time
	start    time.Time

	mu        sync.Mutex
	down      bool          // the daemon is being restarted: no admin socket
	life      int           // the daemon's lifetimes so far
	held      []*soakLoad   // runs holding their calls now
	lastKill  time.Time     // the last SIGKILL
	loads     int           // pptpload runs
	setUp     int           // calls set up
	cleared   int           // calls cleared by their own teardown
	died      []string      // calls that died otherwise
	window    int           // calls set up less than a second before a SIGKILL that it lost
	lost      []string      // calls held across a restart that the restarted daemon did not know
	restarts  []soakRestart // the restarts
	samples   []soakSample
	greSent   uint64
	repaired  bool
	reloadLog string
	leftover  int // calls still listed once every run had cleared its calls
	// The firewall reload's gap: from the reload until pptpgw's rules were
	// back. Control segments passed unseen meanwhile: calls set up or
	// cleared then are unknown to the daemon, or linger (gre-idle).
	gapFrom, gapTo time.Time
	gapCalls       int // calls of runs set up or cleared in the gap that failed
}

// soakLoad is one pptpload run.
type soakLoad struct {
	name     string
	started  time.Time
	base     int       // its first Call ID
	calls    int       // calls it holds
	holding  time.Time // when it reported them all set up
	released bool      // SIGTERM sent: clearing
}

type soakRestart struct {
	at       time.Duration
	signal   string
	down     time.Duration // from the signal to the admin socket answering
	held     int           // calls held across it
	missing  int
	restored int
}

type soakSample struct {
	life                  int
	at                    time.Duration
	goroutines, fds       float64
	heap, rss             float64
	calls, established    int
	greIn, greOut, fastIn float64
}

func TestSoak(t *testing.T) {
	cfg := soakConfigFromEnv(t)
	s := &soak{t: t, cfg: cfg, tp: newGWTopo(t, 1)}
	tp := s.tp
	// The operator's firewall: the lab's own rules, saved before pptpgw's.
	operator := tp.gw.MustRun("iptables-save")
	tp.gw.MustPptpgw("rules", "install")
	tp.srv.Start("pacsim", lab.Build(t, lab.Module+"/e2e/cmd/pacsim"), "--listen", serverIP,
		"--call-id", "1", "--status", tp.l.Path("pacsim.json"))
	for _, ns := range []*lab.NS{tp.clients[0], tp.srv} {
		ns.MustRun("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "gre", "-j", "DROP") // counts what arrives
	}
	s.inMAC, s.outMAC = macOf(t, tp.gw, "wan"), macOf(t, tp.gw, "lan")
	s.gw = tp.gw.StartGateway(lab.GatewayConfig{LogLevel: "info", Args: []string{"--gre-path", cfg.path,
		"--max-calls-per-inside", "4096", "--gre-idle", soakGREIdle.String()}})
	s.start = time.Now()
	s.deadline = s.start.Add(cfg.dur)
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); s.churn(w) }()
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); s.sendGRE(stop) }()
	go func() { defer bg.Done(); s.sampleLoop(stop) }()
	s.restartLoop(operator)
	wg.Wait()
	close(stop)
	bg.Wait()
	s.drain()
	s.report()
}

// churn runs pptpload after pptpload until the deadline: set up, hold for
// a while, clear.
func (s *soak) churn(w int) {
	bin := lab.Build(s.t, lab.Module+"/e2e/cmd/pptpload")
	for i := 0; time.Now().Before(s.deadline); i++ {
		ld := &soakLoad{name: fmt.Sprintf("soak-w%d-%d", w, i), base: 1000 + w*1000, started: time.Now()}
		status := s.tp.l.Path(ld.name + ".json")
		p := s.tp.clients[0].Start(ld.name, bin, "--server", serverIP, "--local", clientIP(0),
			"--calls", strconv.Itoa(soakCalls), "--per-conn", strconv.Itoa(soakPerConn),
			"--call-id", strconv.Itoa(ld.base), "--status", status)
		var r loadReport
		err := lab.WaitFor(func() error {
			if done, err := p.Exited(); done {
				return fmt.Errorf("exited: %v", err)
			}
			if err := readJSON(status, &r); err != nil || r.State != "holding" {
				return fmt.Errorf("not yet: %+v %v", r, err)
			}
			return nil
		}, time.Minute)
		s.mu.Lock()
		s.loads++
		if err == nil && r.Calls == soakCalls && r.Failed == 0 {
			// All set up: its Call IDs are base.. (partial runs die below).
			ld.calls, ld.holding = r.Calls, time.Now()
			s.held = append(s.held, ld)
		}
		s.mu.Unlock()
		if err == nil {
			time.Sleep(s.cfg.period/4 + rand.N(s.cfg.period/2))
		}
		s.mu.Lock()
		ld.released = true
		s.held = slices.DeleteFunc(s.held, func(x *soakLoad) bool { return x == ld })
		s.mu.Unlock()
		p.Signal(syscall.SIGTERM)
		exit := p.Wait(time.Minute)
		r = loadReport{}
		rerr := readJSON(status, &r)
		s.account(ld, r, err, exit, rerr)
	}
}

// account adds a finished pptpload run to the totals.
func (s *soak) account(ld *soakLoad, r loadReport, setupErr, exit, readErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setUp += r.Calls
	s.cleared += r.Cleared
	if setupErr == nil && exit == nil && readErr == nil && r.Failed == 0 && r.Cleared == r.Calls && r.Calls == soakCalls {
		return
	}
	lostCalls := max(r.Calls-r.Cleared, 0) + r.Failed
	if s.inGap(ld, time.Now()) {
		s.gapCalls += lostCalls
		return
	}
	if !ld.holding.IsZero() && !s.lastKill.IsZero() && ld.started.Before(s.lastKill) && s.lastKill.Sub(ld.holding) < time.Second {
		// Set up within the write window before a SIGKILL (or started
		// there and finished after it): documented loss.
		s.window += lostCalls
		return
	}
	s.died = append(s.died, fmt.Sprintf("%s: set up %d of %d, cleared %d, failed %d, error %q (setup: %v, exit: %v, status: %v)",
		ld.name, r.Calls, soakCalls, r.Cleared, r.Failed, r.Error, setupErr, exit, readErr))
}

// restartLoop restarts the daemon every period, SIGTERM and SIGKILL in
// turn, and reloads the operator's firewall once, half a period in.
func (s *soak) restartLoop(operator string) {
	reloadAt := s.start.Add(s.cfg.period / 2)
	next := s.start.Add(s.cfg.period)
	for kill := false; ; kill = !kill {
		if !reloadAt.IsZero() && next.After(reloadAt) {
			time.Sleep(time.Until(reloadAt))
			s.reloadFirewall(operator)
			reloadAt = time.Time{}
		}
		if next.After(s.deadline.Add(-s.cfg.period / 4)) {
			return
		}
		time.Sleep(time.Until(next))
		s.restart(kill)
		next = next.Add(s.cfg.period)
	}
}

// inGap reports whether run ld, from its start until end, overlapped the
// firewall reload's gap (a second of margin after it).
func (s *soak) inGap(ld *soakLoad, end time.Time) bool {
	if s.gapFrom.IsZero() {
		return false
	}
	to := s.gapTo
	if to.IsZero() {
		to = time.Now()
	}
	return !ld.started.After(to.Add(time.Second)) && !end.Before(s.gapFrom)
}

// heldIDs returns the Call IDs of the runs that have held their calls for a
// second at least (older ones are in the state file for sure).
func (s *soak) heldIDs(now time.Time) map[*soakLoad][]uint16 {
	out := map[*soakLoad][]uint16{}
	for _, ld := range s.held {
		if now.Sub(ld.holding) >= time.Second && !s.inGap(ld, now) {
			for i := range ld.calls {
				out[ld] = append(out[ld], uint16(ld.base+i))
			}
		}
	}
	return out
}

func (s *soak) restart(kill bool) {
	t := s.t
	s.mu.Lock()
	at := time.Now()
	expect := s.heldIDs(at)
	s.down = true
	if kill {
		s.lastKill = at
	}
	s.mu.Unlock()
	rec := soakRestart{at: at.Sub(s.start), signal: "SIGTERM"}
	if kill {
		rec.signal = "SIGKILL"
		if err := s.gw.Signal(syscall.SIGKILL); err != nil {
			t.Error(err)
		}
		s.gw.Wait(10 * time.Second)
	} else if err := s.gw.Stop(); err != nil {
		t.Errorf("pptpgw on SIGTERM: %v", err)
	}
	s.gw.Restart()
	rec.down = time.Since(at)
	calls, err := s.gw.Calls()
	if err != nil {
		t.Errorf("calls after the restart: %v", err)
	}
	known := map[uint16]bool{}
	for _, c := range calls {
		if c.State == "established" && c.InsideAddr == clientIP(0) {
			known[c.InsideCallID] = true
		}
	}
	rec.restored = len(known)
	s.mu.Lock()
	defer s.mu.Unlock()
	for ld, ids := range expect {
		if ld.released {
			continue // cleared meanwhile: its own teardown
		}
		rec.held += len(ids)
		for _, id := range ids {
			if !known[id] {
				rec.missing++
				s.lost = append(s.lost, fmt.Sprintf("%s call %d after the %s at %v", ld.name, id, rec.signal, rec.at.Round(time.Second)))
			}
		}
	}
	s.restarts = append(s.restarts, rec)
	s.down = false
	s.life++
}

// reloadFirewall replaces the gateway's rules by the operator's own, as
// iptables-restore without --noflush does, and waits for pptpgw to put
// its chains back (--repair-rules).
func (s *soak) reloadFirewall(operator string) {
	f := s.tp.l.Path("operator.rules")
	// Every table the file names is flushed whole: name them all, as a
	// router's complete ruleset does.
	for _, table := range []string{"raw", "mangle", "nat", "filter"} {
		if !strings.Contains(operator, "*"+table+"\n") {
			operator += "*" + table + "\nCOMMIT\n"
		}
	}
	if err := os.WriteFile(f, []byte(operator), 0o644); err != nil {
		s.t.Error(err)
		return
	}
	before := s.stats()["rules_repairs_total"]
	s.mu.Lock()
	s.gapFrom = time.Now()
	s.mu.Unlock()
	if out, err := s.tp.gw.Run("sh", "-c", "iptables-restore < "+f); err != nil {
		s.t.Errorf("iptables-restore: %v: %s", err, out)
		return
	}
	at := time.Now()
	err := lab.WaitFor(func() error {
		if n := s.stats()["rules_repairs_total"]; n <= before {
			return fmt.Errorf("rules_repairs_total %d", n)
		}
		return nil
	}, 20*time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gapTo = time.Now()
	if err != nil {
		s.reloadLog = "not repaired: " + err.Error()
		return
	}
	s.repaired = true
	s.reloadLog = fmt.Sprintf("repaired %v after the reload", time.Since(at).Round(100*time.Millisecond))
}

// stats reads the daemon's stats, or none while it restarts.
func (s *soak) stats() map[string]uint64 {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return map[string]uint64{}
	}
	st, err := s.gw.Stats()
	if err != nil {
		return map[string]uint64{}
	}
	return st
}

// sendGRE sends every established call soakGREPerCS packets a second,
// each way, until stop.
func (s *soak) sendGRE(stop <-chan struct{}) {
	bin := lab.Build(s.t, lab.Module+"/e2e/cmd/gresend")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		down := s.down
		s.mu.Unlock()
		if down {
			continue
		}
		calls, err := s.gw.Calls()
		if err != nil || len(calls) == 0 {
			continue
		}
		// Only calls their PNS holds: a peer sends no GRE on a call it
		// cleared (the gateway may have missed that: the firewall reload).
		s.mu.Lock()
		live := map[uint16]bool{}
		for _, ld := range s.held {
			for i := range ld.calls {
				live[uint16(ld.base+i)] = true
			}
		}
		s.mu.Unlock()
		var in, out []string
		for _, c := range calls {
			if c.State == "established" && live[c.InsideCallID] {
				in = append(in, strconv.Itoa(int(c.OuterCallID)))
				out = append(out, strconv.Itoa(int(c.PeerCallID)))
			}
		}
		n := strconv.Itoa(soakGREPerCS * len(in))
		for _, d := range []struct {
			ns            *lab.NS
			mac, src, dst string
			ids           []string
			file          string
		}{
			{s.tp.srv, s.inMAC, serverIP, publicIP, in, "soak-gre-in.ids"},
			{s.tp.clients[0], s.outMAC, clientIP(0), serverIP, out, "soak-gre-out.ids"},
		} {
			f := s.tp.l.Path(d.file)
			if os.WriteFile(f, []byte(strings.Join(d.ids, "\n")), 0o644) != nil {
				continue
			}
			if _, err := d.ns.Run(bin, "--ifname", "eth0", "--dst-mac", d.mac, "--src", d.src, "--dst", d.dst,
				"--call-id-file", f, "--count", n, "--duration", "900ms", "--batch", "16"); err == nil {
				s.mu.Lock()
				s.greSent += uint64(soakGREPerCS * len(d.ids))
				s.mu.Unlock()
			}
		}
	}
}

// sampleLoop samples the daemon's goroutines, file descriptors, live heap
// and RSS every cfg.sample until stop.
func (s *soak) sampleLoop(stop <-chan struct{}) {
	tick := time.NewTicker(s.cfg.sample)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		down, life := s.down, s.life
		s.mu.Unlock()
		if down {
			continue
		}
		at := time.Since(s.start)
		g, err1 := s.gw.Goroutines()
		fds, err2 := s.gw.OpenFDs()
		heap, err3 := s.gw.LiveHeap()
		rss, err4 := s.gw.RSS()
		st := s.stats()
		calls, err5 := s.gw.Calls()
		s.mu.Lock()
		if err1 == nil && err2 == nil && err3 == nil && err4 == nil && err5 == nil && !s.down && s.life == life {
			est := 0
			for _, c := range calls {
				if c.State == "established" {
					est++
				}
			}
			s.samples = append(s.samples, soakSample{life: life, at: at, goroutines: float64(g), fds: float64(fds),
				heap: float64(heap), rss: float64(rss), calls: len(calls), established: est,
				greIn: float64(st["gre_in"]), fastIn: float64(st["gre_"+s.cfg.path+"_in"])})
		}
		s.mu.Unlock()
	}
}

// drain checks that the table empties once every run has cleared its
// calls: at once but for calls whose teardown the daemon did not see (the
// firewall reload), which end after --gre-idle.
func (s *soak) drain() {
	var left []lab.GWCall
	at := time.Now()
	err := lab.WaitFor(func() error {
		calls, err := s.gw.Calls()
		if err == nil && len(calls) > 0 {
			if len(left) == 0 && time.Since(at) > 3*time.Second {
				left = calls
			}
			err = fmt.Errorf("%d calls left, e.g. %s", len(calls), calls[0])
		}
		return err
	}, soakGREIdle+15*time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leftover = len(left)
	if err != nil {
		s.died = append(s.died, "after every run cleared its calls: "+err.Error())
	}
}

// soakMetric is one resource the soak watches for growth.
type soakMetric struct {
	name  string
	unit  string
	get   func(soakSample) float64
	limit float64 // allowed growth per minute, in unit
}

var soakMetrics = []soakMetric{
	{"goroutines", "", func(x soakSample) float64 { return x.goroutines }, 2},
	{"open fds", "", func(x soakSample) float64 { return x.fds }, 2},
	{"live heap", "KiB", func(x soakSample) float64 { return x.heap / 1024 }, 1024},
	{"RSS", "KiB", func(x soakSample) float64 { return x.rss / 1024 }, 4096},
}

// slope fits a line through (x, y) by least squares and returns its slope.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// lifeSlopes fits m per minute in each daemon lifetime of at least 30 s
// after its warm-up, and returns the duration-weighted mean and the largest
// slope. Shorter lifetimes (a short run) tell the runtime's warm-up more
// than a leak: then it fits the whole run after the first warm-up (lives 0).
func (s *soak) lifeSlopes(m soakMetric) (mean, most float64, lives int) {
	byLife := map[int][]soakSample{}
	for _, x := range s.samples {
		byLife[x.life] = append(byLife[x.life], x)
	}
	var wsum, total float64
	most = -1e18
	for _, xs := range byLife {
		var tx, ty []float64
		for _, x := range xs {
			if x.at-xs[0].at >= s.cfg.warm {
				tx, ty = append(tx, x.at.Minutes()), append(ty, m.get(x))
			}
		}
		if len(tx) < 4 || tx[len(tx)-1]-tx[0] < 0.5 {
			continue
		}
		sl, w := slope(tx, ty), tx[len(tx)-1]-tx[0]
		wsum, total, lives = wsum+sl*w, total+w, lives+1
		most = max(most, sl)
	}
	if total == 0 {
		var tx, ty []float64
		for _, x := range s.samples {
			if x.at >= s.cfg.warm {
				tx, ty = append(tx, x.at.Minutes()), append(ty, m.get(x))
			}
		}
		sl := slope(tx, ty)
		return sl, sl, 0
	}
	return wsum / total, most, lives
}

// greArrived counts the GRE the ends' drop rules saw.
func greArrived(t *testing.T, ns *lab.NS) uint64 {
	out, err := ns.Run("iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-n", "-x")
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == "DROP" && (f[3] == "47" || f[3] == "gre") {
			v, _ := strconv.ParseUint(f[0], 10, 64)
			n += v
		}
	}
	return n
}

// report prints the summary table and fails the test on a lost call, a
// firewall not repaired, too few restarts or a resource that grows.
func (s *soak) report() {
	t := s.t
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	kinds := map[string]int{}
	for _, r := range s.restarts {
		kinds[r.signal]++
	}
	peak := 0
	for _, x := range s.samples {
		peak = max(peak, x.established)
	}
	arrived := greArrived(t, s.tp.clients[0]) + greArrived(t, s.tp.srv)
	fmt.Fprintf(&b, "\n## Soak: %v, --gre-path %s, restart every %v, sample every %v (warm-up %v per lifetime)\n\n",
		s.cfg.dur, s.cfg.path, s.cfg.period, s.cfg.sample, s.cfg.warm)
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| restarts | %d (SIGTERM %d, SIGKILL %d) |\n", len(s.restarts), kinds["SIGTERM"], kinds["SIGKILL"])
	fmt.Fprintf(&b, "| pptpload runs | %d (%d workers × %d calls, %d per control connection) |\n", s.loads, soakWorkers, soakCalls, soakPerConn)
	fmt.Fprintf(&b, "| calls set up / cleared by their own teardown | %d / %d |\n", s.setUp, s.cleared)
	fmt.Fprintf(&b, "| calls died otherwise | %d |\n", len(s.died))
	fmt.Fprintf(&b, "| calls held across a restart and missing after it | %d |\n", len(s.lost))
	fmt.Fprintf(&b, "| calls lost in the write window (set up < 1 s before a SIGKILL, or across it) | %d |\n", s.window)
	fmt.Fprintf(&b, "| established calls at the peak (sampled) | %d |\n", peak)
	fmt.Fprintf(&b, "| GRE sent / arrived at the far end | %d / %d |\n", s.greSent, arrived)
	fmt.Fprintf(&b, "| firewall reload | %s |\n", s.reloadLog)
	fmt.Fprintf(&b, "| calls of runs set up or cleared during the firewall gap that failed | %d |\n", s.gapCalls)
	fmt.Fprintf(&b, "| calls whose teardown the daemon missed (ended by --gre-idle %v) | %d |\n\n", soakGREIdle, s.leftover)
	fmt.Fprintf(&b, "| resource | first | last | min | max | slope per min (mean of lifetimes ≥ 30 s) | largest | limit | |\n|---|---|---|---|---|---|---|---|---|\n")
	var grew []string
	for _, m := range soakMetrics {
		if len(s.samples) == 0 {
			break
		}
		lo, hi := m.get(s.samples[0]), m.get(s.samples[0])
		for _, x := range s.samples {
			lo, hi = min(lo, m.get(x)), max(hi, m.get(x))
		}
		mean, most, lives := s.lifeSlopes(m)
		verdict := "ok"
		if lives == 0 {
			verdict = "ok (whole run)"
		}
		if mean > m.limit {
			verdict = "GROWS"
			grew = append(grew, fmt.Sprintf("%s %+.1f %s/min (limit %.0f)", m.name, mean, m.unit, m.limit))
		}
		fmt.Fprintf(&b, "| %s (%s) | %.0f | %.0f | %.0f | %.0f | %+.2f | %+.2f | %.0f | %s |\n", m.name, orDefault(m.unit, "count"),
			m.get(s.samples[0]), m.get(s.samples[len(s.samples)-1]), lo, hi, mean, most, m.limit, verdict)
	}
	fmt.Fprintf(&b, "\n| restart at | signal | down (to admin socket) | calls held across | established after | missing |\n|---|---|---|---|---|---|\n")
	for _, r := range s.restarts {
		fmt.Fprintf(&b, "| %v | %s | %v | %d | %d | %d |\n", r.at.Round(time.Second), r.signal, r.down.Round(10*time.Millisecond), r.held, r.restored, r.missing)
	}
	var series []string
	for _, x := range s.samples {
		series = append(series, fmt.Sprintf("%v:%d/%d", x.at.Round(time.Second), x.established, x.calls))
	}
	t.Logf("established/listed calls sampled: %s", strings.Join(series, " "))
	t.Log(b.String())
	if p := os.Getenv("E2E_SOAK_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, d := range s.died {
		t.Errorf("died: %s", d)
	}
	for _, l := range s.lost {
		t.Errorf("lost: %s", l)
	}
	if len(s.restarts) < 2 || kinds["SIGKILL"] == 0 {
		t.Errorf("%d restarts (%v), want at least 2 with a SIGKILL", len(s.restarts), kinds)
	}
	if !s.repaired {
		t.Errorf("firewall reload: %s", s.reloadLog)
	}
	if s.setUp == 0 || arrived == 0 {
		t.Errorf("no load: %d calls set up, %d GRE arrived", s.setUp, arrived)
	}
	for _, g := range grew {
		t.Errorf("grows: %s", g)
	}
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
