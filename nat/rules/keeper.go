package rules

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultRepairInterval is how often the daemon re-verifies its rules: a
// firewall reload that wipes them leaves GRE to the router's stack (and
// control connections un-rewritten) for at most this long.
const DefaultRepairInterval = 5 * time.Second

// Keeper keeps pptpgw's rules in place while the daemon runs (the
// --repair-rules loop): every Check compares them with the configuration
// and, when Fix is set, repairs them; either way it logs a change once and
// counts it. Check must not run at the same time as any other operation
// on the same iptables (the daemon calls it from its main loop).
type Keeper struct {
	// Silence, when set, is the nf_tables copy of PPTPGW-SILENCE
	// (nat/silence), which survives iptables reloads: every Check makes
	// sure it is there, whatever Fix says (it is the daemon's own table).
	Silence Silencer

	ipt IPTables
	cfg Config
	fix bool
	log *zap.Logger

	last string // the differences logged last, so a lasting one is logged once

	checks   atomic.Uint64 // rounds run
	repairs  atomic.Uint64 // rounds that changed something
	restored atomic.Uint64 // chains and rules put back
	errs     atomic.Uint64 // rounds that failed to read or repair
	missing  atomic.Uint64 // differences found by the last round (0: in place)
	silenced atomic.Uint64 // times the nf_tables silence table was (re)created
	nftErr   bool          // the last Ensure failed (logged once)
}

// Silencer is nat/silence.Table as the Keeper uses it.
type Silencer interface {
	Ensure() (created bool, err error)
	Dropped() (uint64, error)
}

// NewKeeper returns a keeper of cfg's rules; fix false only reports.
func NewKeeper(ipt IPTables, cfg Config, fix bool, log *zap.Logger) *Keeper {
	return &Keeper{ipt: ipt, cfg: cfg, fix: fix, log: log}
}

// Check runs one round and returns what it found and did.
func (k *Keeper) Check() (RepairReport, error) {
	k.checks.Add(1)
	k.ensureSilence()
	var (
		rep RepairReport
		err error
	)
	if k.fix {
		rep, err = Repair(k.ipt, k.cfg)
	} else {
		rep.Differences, err = Verify(k.ipt, k.cfg)
	}
	if err != nil {
		k.errs.Add(1)
		if msg := "error: " + err.Error(); msg != k.last {
			k.last = msg
			k.log.Error("rules check failed", zap.Bool("repair", k.fix), zap.Error(err))
		}
		return rep, err
	}
	left := len(rep.Differences)
	if k.fix && left > 0 {
		k.repairs.Add(1)
		k.restored.Add(uint64(rep.Restored()))
		k.log.Warn("rules repaired: something (a firewall reload?) changed pptpgw's rules",
			zap.Strings("differences", rep.Differences), zap.Int("restored", rep.Restored()),
			zap.Int("removed", len(rep.Removed)+len(rep.RemovedChains)))
		left = 0
		k.last = ""
	}
	k.missing.Store(uint64(left))
	now := strings.Join(rep.Differences, "\n")
	switch {
	case left > 0 && now != k.last:
		k.log.Warn("rules differ from the configuration; not repaired (--repair-rules=false)",
			zap.Strings("differences", rep.Differences))
	case left == 0 && k.last != "":
		k.log.Info("rules in place again")
	}
	if left == 0 {
		now = ""
	}
	k.last = now
	return rep, nil
}

func (k *Keeper) ensureSilence() {
	if k.Silence == nil {
		return
	}
	created, err := k.Silence.Ensure()
	switch {
	case err != nil:
		k.errs.Add(1)
		if !k.nftErr {
			k.log.Warn("nf_tables silence table unavailable; the iptables rules alone keep the router silent", zap.Error(err))
		}
	case created && k.silenced.Add(1) > 1:
		k.log.Warn("nf_tables silence table re-created: something (nft flush ruleset?) removed it")
	}
	k.nftErr = err != nil
}

// Stats adds the keeper's counters to s (`pptpgw stats`): rules_missing is
// the number of differences the last check found and left (always 0 after
// a successful repair), rules_repaired_total the chains and rules put back.
func (k *Keeper) Stats(s map[string]uint64) {
	s["rules_checks_total"] = k.checks.Load()
	s["rules_repairs_total"] = k.repairs.Load()
	s["rules_repaired_total"] = k.restored.Load()
	s["rules_check_errors_total"] = k.errs.Load()
	s["rules_missing"] = k.missing.Load()
	s["silence_table_created_total"] = k.silenced.Load()
	if k.Silence != nil {
		// ICMP errors quoting GRE the router did not send (a reload's gap).
		n, _ := k.Silence.Dropped()
		s["silence_icmp_dropped"] = n
	}
}

// StatNames lists the keys Stats sets.
func StatNames() []string {
	s := map[string]uint64{}
	(&Keeper{}).Stats(s)
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
