package main

import (
	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/conntrack"
)

// policyOf turns the configuration's policy (README "Policy") into the
// table's. The names were checked when the configuration was parsed.
func policyOf(p config.Policy) *conntrack.Policy {
	cp := &conntrack.Policy{MinMPPE: p.RequireMPPE, AllowInside: p.AllowInside, AllowPeer: p.AllowPeer}
	for _, name := range p.RequireAuth {
		if a, ok := alg.ParseAuth(name); ok {
			cp.Auth = append(cp.Auth, a)
		}
	}
	return cp
}

// logPolicy logs the policy put in force (start, SIGHUP).
func logPolicy(log *zap.Logger, p config.Policy) {
	log.Info("policy", zap.Strings("require_auth", p.RequireAuth), zap.Int("require_mppe", p.RequireMPPE),
		zap.Int("allow_inside", len(p.AllowInside)), zap.Int("allow_peer", len(p.AllowPeer)))
}

// ControlDenied logs a control connection the policy does not allow,
// rate-limited per reason (conntrack.PolicyObserver).
func (l *callLog) ControlDenied(c conntrack.ConnInfo, reason string) {
	l.connWarn("control connection denied", c, reason)
}
