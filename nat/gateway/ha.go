package gateway

import (
	"go.uber.org/zap"
	"strings"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/ha"
)

// A gateway pair (DESIGN.md): the call table is replicated through etcd
// by the goroutine "replicate" (nat/ha), never on the packet path.

// startHA sets up replication when Config.HA names etcd members.
func (g *Gateway) startHA() error {
	if !g.cfg.HA.Enabled() {
		return nil
	}
	cfg := g.cfg.HA
	cfg.Log = g.log.Named("ha")
	r, err := ha.New(cfg, g.table)
	if err != nil {
		return err
	}
	g.ha = r
	g.log.Info("replicating the call table", zap.String("node", r.Node()), zap.Strings("etcd", cfg.Endpoints))
	return nil
}

// HA is the replicator (nil: no pair).
func (g *Gateway) HA() *ha.Replicator { return g.ha }

// haStats adds the replication's state (ha_*).
func (g *Gateway) haStats(s map[string]uint64) {
	if g.ha != nil {
		for k, v := range g.ha.Stats() {
			s[k] = v
		}
	}
}

// withNode names the node of every call: its own, or this one's.
func (g *Gateway) withNode(calls []conntrack.CallInfo) []conntrack.CallInfo {
	if g.ha == nil {
		return calls
	}
	for i := range calls {
		if calls[i].Conn.Node == "" {
			calls[i].Conn.Node = g.ha.Node()
		}
	}
	return calls
}

// replicationHealth: whether a pair is configured, whether its node
// reaches etcd, and the replication's state in one line.
func (g *Gateway) replicationHealth() (configured, connected bool, detail string) {
	if g.ha == nil {
		return false, true, ""
	}
	detail = g.ha.Health()
	return true, strings.HasPrefix(detail, "ha connected"), detail
}
