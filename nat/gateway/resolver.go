package gateway

import (
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/ctnl"
)

// liveResolver learns a new control connection's roles and public endpoint
// from the kernel's conntrack table (DESIGN.md "The data path" 1). The
// table calls it until it answers; a lookup that fails leaves the packet
// untouched and the next one asks again.
type liveResolver struct {
	ct       ctnl.Getter
	publicIP []netip.Addr // --public-ip: the explicit override
	log      *zap.Logger
	failures atomic.Uint64
	lastLog  atomic.Int64
}

// newLiveResolver dials ctnetlink.
func newLiveResolver(publicIP []netip.Addr, log *zap.Logger) (*liveResolver, error) {
	ct, err := ctnl.Dial(0)
	if err != nil {
		return nil, err
	}
	return &liveResolver{ct: ct, publicIP: publicIP, log: log}, nil
}

func toAP(e conntrack.Endpoint) netip.AddrPort { return netip.AddrPortFrom(e.Addr.IP(), e.Port) }

func fromAP(a netip.AddrPort) conntrack.Endpoint {
	return conntrack.Endpoint{Addr: conntrack.AddrFrom(a.Addr()), Port: a.Port()}
}

func (r *liveResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	return r.lookup(src, dst)
}

// ResolveSegment skips a first SYN: queued in mangle FORWARD, before its
// conntrack entry is confirmed (and its source NAT chosen), so the kernel
// has nothing to tell yet. A SYN-ACK is asked about as its opener's tuple
// first: with MASQUERADE (a PNS inside) that is the entry's original
// tuple, one query instead of two. Either way round Lookup finds the
// entry; only the number of queries differs.
func (r *liveResolver) ResolveSegment(seg *conntrack.Segment) (conntrack.ConnSpec, bool) {
	switch {
	case seg.SYN && !seg.ACK:
		return conntrack.ConnSpec{}, false
	case seg.SYN:
		return r.lookup(seg.Dst, seg.Src)
	}
	return r.lookup(seg.Src, seg.Dst)
}

func (r *liveResolver) lookup(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	n, err := ctnl.Lookup(r.ct, toAP(src), toAP(dst))
	if err != nil {
		r.failures.Add(1)
		if now := time.Now().UnixNano(); now-r.lastLog.Load() > int64(10*time.Second) {
			r.lastLog.Store(now)
			r.log.Warn("conntrack lookup failed", zap.Error(err))
		}
		return conntrack.ConnSpec{}, false
	}
	if !n.Found {
		return conntrack.ConnSpec{}, false
	}
	if !n.Translated() {
		// Seen only after the SYN was confirmed: a connection the kernel
		// left untranslated gives identity calls.
		return conntrack.ConnSpec{Inside: fromAP(n.OrigSrc), Outside: fromAP(n.OrigDst),
			Public: fromAP(n.OrigSrc), Identity: true}, true
	}
	spec := conntrack.ConnSpec{Inside: fromAP(n.Inside()), Outside: fromAP(n.Peer()), Public: fromAP(n.Public())}
	if len(r.publicIP) > 0 {
		spec.Public.Addr = r.pickPublic(spec.Public.Addr)
	}
	return spec, true
}

// pickPublic applies --public-ip: the learnt address when it is one of
// them, else the first.
func (r *liveResolver) pickPublic(learnt conntrack.Addr) conntrack.Addr {
	for _, a := range r.publicIP {
		if conntrack.AddrFrom(a) == learnt {
			return learnt
		}
	}
	return conntrack.AddrFrom(r.publicIP[0])
}
