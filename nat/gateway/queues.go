package gateway

import (
	"context"
	"time"

	"github.com/pptpgw/pptpgw/nat"
	"github.com/pptpgw/pptpgw/nat/nfq"
)

// openQueues binds the control and the GRE queues, one worker each.
// They are bound apart: only the control ones may be fail-open.
func (g *Gateway) openQueues(ctx context.Context) error {
	l := g.layout
	g.workers = make([]*nat.Worker, int(l.Last()-l.First)+1)
	for i := range g.workers {
		g.workers[i] = g.engine.NewWorker()
	}
	ctlFirst, n := l.Control()
	greFirst, _ := l.GRE()
	nlog := g.log.Named("nfq")
	var err error
	if g.ctlQ, err = g.deps.OpenQueues(ctx, nfq.Config{Queue: ctlFirst, Queues: n, FailOpen: g.cfg.Rules.FailOpen, Logger: nlog}, g.handle); err != nil {
		return err
	}
	if g.greQ, err = g.deps.OpenQueues(ctx, nfq.Config{Queue: greFirst, Queues: n, Logger: nlog}, g.handle); err != nil {
		return err
	}
	return nil
}

// hookOf tells where a packet was queued from its queue and what the
// kernel says: control queues carry TCP 1723 from mangle FORWARD, and the
// router's own from mangle OUTPUT and INPUT; on the GRE queues, PREROUTING
// is inbound GRE or ICMP, a packet without an input device is the
// router's own, and the rest is forwarded outbound GRE.
func hookOf(l interface{ IsControl(uint16) bool }, q uint16, meta nfq.Meta) nat.Hook {
	switch {
	case l.IsControl(q) && meta.Hook == nfq.HookOutput:
		return nat.HookControlOut
	case l.IsControl(q) && meta.Hook == nfq.HookInput:
		return nat.HookControlIn
	case l.IsControl(q):
		return nat.HookControl
	case meta.Hook == nfq.HookPrerouting:
		return nat.HookGREIn
	case !meta.HasInDev:
		return nat.HookLocalOut
	}
	return nat.HookGREOut
}

// handle is the queues' nfq.Handler: the queue's own worker, so it
// allocates nothing. A translated inbound packet takes the mark bit, which
// lets it skip pptpgw's other iptables chains.
func (g *Gateway) handle(q uint16, pkt []byte, mark uint32, meta nfq.Meta) (nfq.Verdict, uint32, bool) {
	hook := hookOf(g.layout, q, meta)
	if hook == nat.HookControl {
		g.ifaces.learn(meta.InDev, meta.OutDev)
	}
	v, _ := g.workers[q-g.layout.First].Process(pkt, hook, time.Now().UnixNano())
	switch v {
	case nat.Drop:
		return nfq.Drop, mark, false
	case nat.AcceptModified:
		if hook == nat.HookGREIn {
			mark |= g.cfg.Rules.MarkBit
		}
		return nfq.Accept, mark, true
	}
	return nfq.Accept, mark, false
}
