package gateway

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// PathChoice is the GRE path in use and why.
type PathChoice struct {
	Path   string   // the first tier: PathBPF, PathKernel or PathQueue
	Tiers  []string // the fast paths running, in the order packets meet them
	Reason string
}

// plan is what --gre-path runs: fast paths in the order packets meet them
// (what tc-eBPF does not translate, say GRE arriving on a PPP interface,
// nf_tables still may), and the one that must start.
func plan(path string) (tiers []string, required string) {
	switch path {
	case PathAuto:
		return []string{PathBPF, PathKernel}, ""
	case PathBPF:
		return []string{PathBPF, PathKernel}, PathBPF
	case PathKernel:
		return []string{PathKernel}, PathKernel
	}
	return nil, ""
}

// countersPerTick: above this many calls the counters are read less
// often than every second (nf_tables dumps cost more than linear time).
var countersPerTick = map[string]int{PathKernel: 1000, PathBPF: 10000}

// startFastPath starts the fast paths --gre-path asks for that work, from
// the call table as restored; with none, GRE takes the queues. What a
// path not in use left in the kernel is removed.
func (g *Gateway) startFastPath() error {
	tiers, required := plan(g.cfg.GREPath)
	var why []string
	mirror := fastpath.NewMirror() // the tiers hold the same calls: kept once
	for _, name := range tiers {
		if err := g.tryBackend(name, mirror); err != nil {
			if name == required {
				return fmt.Errorf("--gre-path %s: %w (use --gre-path kernel or queue where it cannot run)", name, err)
			}
			why = append(why, name+": "+err.Error())
			continue
		}
		g.pathChoice.Tiers = append(g.pathChoice.Tiers, name)
	}
	g.pathChoice.Path = PathQueue
	if len(g.fast) > 0 {
		g.pathChoice.Path = g.pathChoice.Tiers[0]
	}
	g.pathChoice.Reason = reason(g.cfg.GREPath, why)
	g.removeOtherPaths()
	log := g.log.Info
	if len(why) > 0 {
		log = g.log.Warn
	}
	log("GRE path", zap.String("gre_path", g.pathChoice.Path), zap.Strings("tiers", g.pathChoice.Tiers),
		zap.String("requested", g.cfg.GREPath), zap.String("reason", g.pathChoice.Reason))
	return nil
}

func reason(requested string, failed []string) string {
	if len(failed) == 0 {
		return "--gre-path " + requested
	}
	return "--gre-path " + requested + ": " + strings.Join(failed, "; ")
}

func (g *Gateway) tryBackend(name string, mirror *fastpath.Mirror) error {
	mk := g.deps.Backends[name]
	if mk == nil {
		return fmt.Errorf("not built in")
	}
	be, err := mk()
	if err != nil {
		return err
	}
	r := fastpath.New(g.table, be, fastpath.Config{CountersPerTick: countersPerTick[name], Log: g.log.Named("fastpath"),
		OnMapping: g.hub.Mapping(name), Mirror: mirror})
	if err := r.Start(); err != nil {
		be.Close(true)
		return err
	}
	if ib, ok := be.(interfaceBackend); ok {
		if len(g.cfg.BPFInterfaces) > 0 {
			idx, err := ifindexes(g.cfg.BPFInterfaces)
			if err != nil {
				r.Stop(true)
				return err
			}
			g.ifaces.setFixed(idx)
		}
		g.ifaces.attach(ib, g.log.Named("fastpath"))
	}
	g.fast = append(g.fast, r)
	return nil
}

// ifindexes looks the named interfaces up.
func ifindexes(names []string) ([]int, error) {
	var idx []int
	for _, n := range names {
		i, err := net.InterfaceByName(n)
		if err != nil {
			return nil, fmt.Errorf("--bpf-interfaces %s: %w", n, err)
		}
		idx = append(idx, i.Index)
	}
	return idx, nil
}

// removeOtherPaths deletes what a run with another --gre-path left in the
// kernel.
func (g *Gateway) removeOtherPaths() {
	for name, remove := range g.deps.RemoveBackend {
		if slices.Contains(g.pathChoice.Tiers, name) {
			continue
		}
		if removed, err := remove(); err != nil {
			g.log.Debug("nothing to remove", zap.String("gre_path", name), zap.Error(err))
		} else if removed {
			g.log.Info("removed the GRE fast path an earlier run left", zap.String("gre_path", name))
		}
	}
}

// stopFastPath reads the counters a last time and lets go of the kernel
// objects; they stay (the next start re-syncs them) unless
// --install-rules set them up.
func (g *Gateway) stopFastPath() {
	for _, r := range g.fast {
		if err := r.Stop(g.cfg.InstallRules); err != nil {
			g.log.Error("stop the GRE fast path", zap.String("gre_path", r.Backend().Name()), zap.Error(err))
		}
	}
}

// Path returns the GRE path in use and why.
func (g *Gateway) Path() PathChoice { return g.pathChoice }
