package gateway

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// PathChoice is the GRE path in use and why.
type PathChoice struct {
	Path   string // PathBPF, PathKernel or PathQueue
	Reason string
}

// candidates are the backends --gre-path tries, in order.
func candidates(path string) []string {
	switch path {
	case PathAuto:
		return []string{PathBPF, PathKernel}
	case PathQueue:
		return nil
	}
	return []string{path}
}

// countersPerTick: above this many calls the counters are read less
// often than every second (nf_tables dumps cost more than linear time).
var countersPerTick = map[string]int{PathKernel: 1000, PathBPF: 10000}

// startFastPath starts the first backend of --gre-path that works, from
// the call table as restored; with auto and none working, GRE takes the
// queues. Whatever another path left in the kernel is removed, so only one
// translates.
func (g *Gateway) startFastPath() error {
	var why []string
	for _, name := range candidates(g.cfg.GREPath) {
		err := g.tryBackend(name)
		if err == nil {
			g.pathChoice = PathChoice{Path: name, Reason: reason(g.cfg.GREPath, why)}
			break
		}
		if g.cfg.GREPath != PathAuto {
			return fmt.Errorf("--gre-path %s: %w (use --gre-path queue to take GRE through the queues)", name, err)
		}
		why = append(why, name+": "+err.Error())
	}
	if g.fast == nil {
		g.pathChoice = PathChoice{Path: PathQueue, Reason: reason(g.cfg.GREPath, why)}
	}
	g.removeOtherPaths()
	log := g.log.Info
	if len(why) > 0 {
		log = g.log.Warn
	}
	log("GRE path", zap.String("gre_path", g.pathChoice.Path), zap.String("requested", g.cfg.GREPath), zap.String("reason", g.pathChoice.Reason))
	return nil
}

func reason(requested string, failed []string) string {
	if requested != PathAuto {
		return "--gre-path " + requested
	}
	if len(failed) == 0 {
		return "auto: the first that works"
	}
	return "auto: " + strings.Join(failed, "; ")
}

func (g *Gateway) tryBackend(name string) error {
	mk := g.deps.Backends[name]
	if mk == nil {
		return fmt.Errorf("not built in")
	}
	be, err := mk()
	if err != nil {
		return err
	}
	r := fastpath.New(g.table, be, fastpath.Config{CountersPerTick: countersPerTick[name], Log: g.log.Named("fastpath")})
	if err := r.Start(); err != nil {
		be.Close(true)
		return err
	}
	g.fast = r
	if ib, ok := be.(interfaceBackend); ok {
		g.ifaces.attach(ib, g.log.Named("fastpath"))
	}
	return nil
}

// removeOtherPaths deletes what a run with another --gre-path left in the
// kernel.
func (g *Gateway) removeOtherPaths() {
	for name, remove := range g.deps.RemoveBackend {
		if name == g.pathChoice.Path {
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
	if g.fast == nil {
		return
	}
	if err := g.fast.Stop(g.cfg.InstallRules); err != nil {
		g.log.Error("stop the GRE fast path", zap.Error(err))
	}
}

// Path returns the GRE path in use and why.
func (g *Gateway) Path() PathChoice { return g.pathChoice }
