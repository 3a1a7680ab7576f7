package gateway

import (
	"os"

	"github.com/pptpgw/pptpgw/nat"
	"github.com/pptpgw/pptpgw/nat/nfq"
)

// Stats returns the counters by name (`stats --json` keys: a contract).
func (g *Gateway) Stats() map[string]uint64 {
	s := g.table.Stats()
	e := g.engine
	for _, r := range nat.Reasons() {
		s["packets_"+r.String()] = e.Count(r)
	}
	s["packets_total"] = e.Packets()
	s["gre_in"] = e.Count(nat.ReasonGREIn)
	s["gre_out"] = e.Count(nat.ReasonGREOut)
	s["gre_dropped_unknown_call"] = e.Count(nat.ReasonUnknownCall)
	s["gre_dropped_refused_call"] = e.Count(nat.ReasonRefusedCall)
	g.fastPathStats(s)
	g.eventStats(s)
	g.haStats(s)
	g.stateStats(s)
	if g.keeper != nil {
		g.keeper.Stats(s)
	}
	s["queue_drops"] = g.deps.QueueDrops(g.layout.First, g.layout.Last())
	for _, q := range []Queues{g.ctlQ, g.greQ} {
		if q == nil {
			continue
		}
		qs := q.Stats()
		s["queue_verdict_errors"] += qs.VerdictErrors
		s["queue_enobufs"] += qs.NoBuffers
		s["queue_handler_panics"] += qs.Panics
	}
	return s
}

// fastPathStats: gre_PATH_{in,out,calls,errors,rereads} of each fast path
// running (PATH kernel or bpf) and gre_path_PATH = 1 for the first.
func (g *Gateway) fastPathStats(s map[string]uint64) {
	s["gre_path_"+g.pathChoice.Path] = 1
	for _, r := range g.fast {
		st := r.Stats()
		p := "gre_" + r.Backend().Name()
		s[p+"_in"] = st.PacketsIn
		s[p+"_out"] = st.PacketsOut
		s[p+"_calls"] = st.Mappings
		s[p+"_errors"] = st.Errors
		s[p+"_rereads"] = st.Full
	}
}

// procQueueDrops sums the kernel's drop counters of queues first..last.
func procQueueDrops(first, last uint16) uint64 {
	f, err := os.Open("/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		return 0
	}
	defer f.Close()
	qs, err := nfq.ReadProcStats(f)
	if err != nil {
		return 0
	}
	var n uint64
	for _, q := range qs {
		if q.Queue >= first && q.Queue <= last {
			n += uint64(q.QueueDropped) + uint64(q.UserDropped)
		}
	}
	return n
}
