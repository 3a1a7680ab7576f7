package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/nat/gateway"
)

// cmdHealth is `pptpgw health`: GET /healthz, printed; exit 0 when healthy (with --live: when
// nothing asks for a restart), 1 otherwise or when the daemon does not answer.
func cmdHealth(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(config.CmdHealth, args, os.Environ())
	if err != nil {
		return configError(err, config.CmdHealth, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, body, err := admin.NewClient(cfg.AdminSocket).Health(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pptpgw health: %v\n", err)
		return 1
	}
	if cfg.JSON {
		stdout.Write(raw)
	} else {
		admin.PrintHealth(stdout, body)
	}
	if body.Status == admin.HealthOK || cfg.Live && body.Live {
		return 0
	}
	return 1
}

// Health serves GET /healthz: the gateway's facts, judged now.
func (d *daemon) Health() []admin.HealthProblem { return problemsOf(d.healthProblems()) }

func (d *daemon) healthProblems() []gateway.Problem { return gateway.Judge(d.gw.Health(time.Now())) }

func problemsOf(ps []gateway.Problem) []admin.HealthProblem {
	out := make([]admin.HealthProblem, len(ps))
	for i, p := range ps {
		out[i] = admin.HealthProblem(p)
	}
	return out
}

// healthInterval is how often the daemon judges its health without a
// systemd watchdog asking for more: often enough that drops growing
// between two checks show (gateway.OverflowWindow).
const healthInterval = 5 * time.Second

// watchHealth judges the gateway's health every healthInterval (or half
// the systemd watchdog's interval when shorter) until ctx ends: it logs
// each change, tells systemd the status line, and pets the watchdog
// (WATCHDOG=1) only while live. A gateway stuck behind a lock never
// answers Health, so the watchdog restarts it.
func (d *daemon) watchHealth(ctx context.Context) {
	every := healthInterval
	wd, _ := sddaemon.SdWatchdogEnabled(false)
	if wd > 0 && wd/2 < every {
		every = wd / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := "ok"
	for {
		b := admin.NewHealthBody(d.Health())
		now := "ok"
		if b.Status != admin.HealthOK {
			now = gateway.Summary(problemsBack(b.Problems))
		}
		if now != last {
			d.logHealth(now, b)
			sddaemon.SdNotify(false, "STATUS="+now)
			last = now
		}
		if wd > 0 && b.Live {
			sddaemon.SdNotify(false, sddaemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *daemon) logHealth(summary string, b admin.HealthBody) {
	switch {
	case b.Status == admin.HealthOK:
		d.log.Info("healthy again")
	case !b.Live:
		d.log.Error("unhealthy; the watchdog (if any) is no longer petted", zap.String("problems", summary))
	default:
		d.log.Warn("unhealthy", zap.String("problems", summary))
	}
}

func problemsBack(ps []admin.HealthProblem) []gateway.Problem {
	out := make([]gateway.Problem, len(ps))
	for i, p := range ps {
		out[i] = gateway.Problem(p)
	}
	return out
}

// notifySystemd sends state to systemd's notify socket under Type=notify
// (READY=1, STOPPING=1); without one it does nothing.
func (d *daemon) notifySystemd(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		d.log.Warn("sd_notify", zap.String("state", state), zap.Error(err))
	}
}
