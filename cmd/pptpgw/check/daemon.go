package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// DaemonFacts is what the running daemon says on its admin socket.
type DaemonFacts struct {
	Socket string
	Err    string // no answer: not running, or on another socket
	Stats  map[string]uint64
	// Settings are its effective settings by option name (GET
	// /v1/config); nil from a daemon without that route.
	Settings map[string]string
}

// GatherDaemon asks the daemon on socket for its counters and settings.
func GatherDaemon(f *Facts, socket string) {
	f.Daemon = DaemonFacts{Socket: socket}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c := admin.NewClient(socket)
	_, stats, err := c.Stats(ctx)
	if err != nil {
		f.Daemon.Err = err.Error()
		return
	}
	f.Daemon.Stats = stats
	if s, err := c.Settings(ctx); err == nil {
		f.Daemon.Settings = s
	}
}

// runningRules is the rules configuration the daemon runs with, from its
// settings; false when they do not say.
func (d *DaemonFacts) runningRules() (rules.Config, bool) {
	s := d.Settings
	q, err1 := strconv.ParseUint(s["queue"], 10, 16)
	n, err2 := strconv.ParseUint(s["queues"], 10, 16)
	fo, err3 := strconv.ParseBool(s["fail-open"])
	mb, err4 := strconv.ParseUint(strings.TrimPrefix(s["mark-bit"], "0x"), 16, 32)
	if s == nil || err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return rules.Config{}, false
	}
	return rules.Config{Queue: uint16(q), Queues: uint16(n), FailOpen: fo, MarkBit: uint32(mb)}, true
}

// normal fills a rules configuration's defaults, to compare two.
func normal(c rules.Config) rules.Config {
	if c.Queues == 0 {
		c.Queues = 1
	}
	if c.MarkBit == 0 {
		c.MarkBit = rules.DefaultMarkBit
	}
	return c
}

func flagsOf(c rules.Config) string {
	c = normal(c)
	return fmt.Sprintf("--queue %d --queues %d --fail-open=%v --mark-bit %#08x", c.Queue, c.Queues, c.FailOpen, c.MarkBit)
}

// checkRulesRunning judges the rules against what the running daemon
// needs, not only against this command's flags: a check run without the
// daemon's --config compares with the wrong queues, and a daemon with
// --repair-rules=false leaves what a firewall reload removed.
func checkRulesRunning(f *Facts) Result {
	d := &f.Daemon
	if d.Err != "" || d.Stats == nil {
		return ok("no daemon answers on " + d.Socket + ": nothing running to compare with")
	}
	if r := repairCounters(d.Stats); r.Status != OK {
		return r
	}
	running, known := d.runningRules()
	if !known {
		return ok("the daemon on " + d.Socket + " does not say its settings; its own rules check finds nothing missing")
	}
	if normal(running) != normal(f.Rules) {
		return warn("the daemon runs with "+flagsOf(running)+" but this check was given "+flagsOf(f.Rules)+
			": the rules and queues checks judged against the wrong configuration",
			"run pptpgw check with the daemon's --config (or the same flags)")
	}
	rs, err := f.defaultRuleset()
	if err != "" {
		return warn("cannot read the iptables rules: "+err, "")
	}
	diff, e := rules.Verify(rs, running)
	if e != nil {
		return warn("cannot compare the rules: "+e.Error(), "")
	}
	if len(diff) > 0 {
		fix := "pptpgw rules install with the daemon's flags (" + flagsOf(running) + ")"
		if d.Settings["repair-rules"] == "true" {
			fix = "the daemon puts them back within 5s (--repair-rules); if this persists, something keeps changing them: " + fix
		}
		return fail("the rules have drifted from what the running daemon needs ("+strings.Join(diff, "; ")+")", fix)
	}
	return ok("the rules match the running daemon's configuration (" + flagsOf(running) + ")")
}

// repairCounters judges the daemon's own rules loop (nat/rules.Keeper).
func repairCounters(s map[string]uint64) Result {
	switch {
	case s["rules_missing"] > 0:
		return fail(fmt.Sprintf("the running daemon finds %d differences in its rules and does not repair them (--repair-rules=false)", s["rules_missing"]),
			"pptpgw rules install with the daemon's flags, or run it with --repair-rules")
	case s["rules_repairs_total"] > 0:
		return warn(fmt.Sprintf("the running daemon had to put its rules back %d times (%d chains and rules) since it started: something (a firewall reload) removes them",
			s["rules_repairs_total"], s["rules_repaired_total"]),
			"make the firewall keep pptpgw's chains (load them from the firewall's own rules, deploy/rules.v4) so GRE never falls through between a reload and the repair")
	case s["rules_check_errors_total"] > 0:
		return warn(fmt.Sprintf("the running daemon failed to read its rules %d times", s["rules_check_errors_total"]),
			"see the daemon's log (\"rules check failed\")")
	}
	return ok("")
}

// statReplicationConnected is in the daemon's stats only when it runs as
// one of a gateway pair (--ha-etcd, nat/ha): 1 while it reaches etcd.
const statReplicationConnected = "ha_connected"

// checkReplication: a gateway pair's node reaches etcd, so that its calls
// reach its standby.
func checkReplication(f *Facts) Result {
	s := f.Daemon.Stats
	connected, configured := s[statReplicationConnected]
	if !configured {
		return ok("not configured")
	}
	var more []string
	for _, k := range []string{"ha_lag_ms", "ha_pending", "ha_errors"} {
		if v, ok := s[k]; ok {
			more = append(more, fmt.Sprintf("%s %d", k, v))
		}
	}
	if connected == 0 {
		return fail("this node of the gateway pair does not reach etcd: calls set up now would be lost on a failover until it does ("+strings.Join(more, ", ")+")",
			"check --ha-etcd and that etcd runs and is reachable (see the daemon's log)")
	}
	return ok("replication connected (" + strings.Join(more, ", ") + ")")
}
