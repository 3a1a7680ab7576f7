package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/nat/nft"
)

// startFastPath starts the kernel GRE fast path (--gre-path kernel, or
// auto: the default) from the call table as restored; with --gre-path
// queue it removes a table a kernel run left behind, so the kernel
// translates nothing on its own. With auto, a table that cannot be created
// (no nf_tables) leaves GRE to the queues, logged.
func (d *daemon) startFastPath(ctx context.Context) error {
	if d.cfg.GREPath == config.GREPathQueue {
		if removed, err := nft.RemoveTable(); err != nil {
			d.log.Debug("no nf_tables fast path to remove", zap.Error(err))
		} else if removed {
			d.log.Info("removed the kernel GRE fast path left by an earlier run", zap.String("table", "ip "+nft.TableName))
		}
		return nil
	}
	d.fast = nft.New(nft.Config{MarkBit: d.markBit, Log: d.log.Named("nft")})
	if err := d.fast.Start(ctx, d.table); err != nil {
		d.fast = nil
		if d.cfg.GREPath == config.GREPathAuto {
			d.log.Warn("no kernel GRE fast path, GRE goes through the queues", zap.Error(err))
			return nil
		}
		return fmt.Errorf("--gre-path kernel: %w (use --gre-path queue where nf_tables is missing)", err)
	}
	return nil
}

// stopFastPath detaches the fast path. Its table stays with persistent
// rules, so the calls it knows keep flowing while the daemon restarts (the
// next start re-syncs it); what --install-rules set up goes at exit.
func (d *daemon) stopFastPath() {
	if d.fast == nil {
		return
	}
	// d.fast stays set: the admin socket may still read its stats.
	if err := d.fast.Stop(d.cfg.InstallRules); err != nil {
		d.log.Error("remove the kernel GRE fast path", zap.Error(err))
	}
}

// fastPathStats adds the fast path's counters to the stats.
func (d *daemon) fastPathStats(s map[string]uint64) {
	if d.fast == nil {
		return
	}
	st := d.fast.Stats()
	s["gre_kernel_in"] = st.PacketsIn
	s["gre_kernel_out"] = st.PacketsOut
	s["gre_kernel_calls"] = st.Elements
	s["gre_kernel_errors"] = st.Errors
}
