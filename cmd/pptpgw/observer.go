package main

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/admin"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/logging"
	"github.com/pptpgw/pptpgw/conntrack"
)

// callLog writes one structured line per call event; refusals and
// malformed messages are rate-limited per reason, so a flood logs once per
// interval.
type callLog struct {
	log     *zap.Logger
	limiter *logging.Limiter
}

func newCallLog(log *zap.Logger) *callLog {
	return &callLog{log: log, limiter: logging.NewLimiter(10*time.Second, 1024)}
}

func callFields(c admin.CallView) []zap.Field {
	return []zap.Field{
		zap.String("call", c.ID), zap.String("role", c.Role),
		zap.String("inside_addr", c.InsideAddr), zap.Uint16("inside_call_id", c.InsideCallID),
		zap.String("public_addr", c.PublicAddr), zap.Uint16("outer_call_id", c.OuterCallID),
		zap.String("peer_addr", c.PeerAddr), zap.Uint16("peer_call_id", c.PeerCallID),
		zap.String("auth", c.Auth), zap.String("mppe", c.MPPE),
	}
}

func (l *callLog) CallUp(ci conntrack.CallInfo) {
	c := admin.ViewOf(ci)
	l.log.Info("call set up", append(callFields(c), zap.Bool("picked_up", c.PickedUp))...)
}

func (l *callLog) CallRefused(ci conntrack.CallInfo, reason string) {
	ok, suppressed := l.limiter.Check("refused/"+reason, time.Now())
	if !ok {
		return
	}
	c := admin.ViewOf(ci)
	l.log.Warn("call refused", append(callFields(c), zap.String("reason", reason), zap.Uint64("suppressed", suppressed))...)
}

func (l *callLog) CallDown(ci conntrack.CallInfo, reason string) {
	c := admin.ViewOf(ci)
	l.log.Info("call torn down", append(callFields(c), zap.String("reason", reason),
		zap.Duration("duration", time.Since(c.Created).Round(time.Millisecond)),
		zap.Uint64("packets_in", c.PacketsIn), zap.Uint64("packets_out", c.PacketsOut),
		zap.Uint64("bytes_in", c.BytesIn), zap.Uint64("bytes_out", c.BytesOut))...)
}

func (l *callLog) Malformed(c conntrack.ConnInfo, reason string) {
	l.connWarn("malformed control message", c, reason)
}

// connWarn logs a control connection event once per interval per message
// and reason, with how many were suppressed since.
func (l *callLog) connWarn(msg string, c conntrack.ConnInfo, reason string) {
	ok, suppressed := l.limiter.Check(msg+"/"+reason, time.Now())
	if !ok {
		return
	}
	l.log.Warn(msg, zap.String("reason", reason),
		zap.String("inside", epString(c.Inside)), zap.String("outside", epString(c.Outside)),
		zap.Uint64("suppressed", suppressed))
}

func epString(e conntrack.Endpoint) string { return netip.AddrPortFrom(e.Addr.IP(), e.Port).String() }
