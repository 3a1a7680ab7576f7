package gateway

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/conntrack"
)

// oneFlow is a conntrack table of one entry that counts the queries.
type oneFlow struct {
	f       ct.Flow
	queries int
}

func (o *oneFlow) Get(q ct.Flow) (ct.Flow, error) {
	o.queries++
	t := q.TupleOrig
	if !t.IP.SourceAddress.IsValid() {
		t = q.TupleReply
	}
	if t == o.f.TupleOrig || t == o.f.TupleReply {
		return o.f, nil
	}
	return ct.Flow{}, fmt.Errorf("query: %w", &netlink.OpError{Op: "receive", Err: unix.ENOENT})
}

func tcp(src, dst string) ct.Tuple {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	return ct.Tuple{IP: ct.IPTuple{SourceAddress: s.Addr(), DestinationAddress: d.Addr()},
		Proto: ct.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: s.Port(), DestinationPort: d.Port()}}
}

func ep(s string) conntrack.Endpoint { return fromAP(netip.MustParseAddrPort(s)) }

// A first SYN costs no query; a SYN-ACK of a MASQUERADEd connection one;
// a port-forward's SYN-ACK two (its opener is outside); all find the same
// roles as Resolve.
func TestResolveSegment(t *testing.T) {
	masq := ct.Flow{TupleOrig: tcp("192.168.1.10:40000", "203.0.113.5:1723"), TupleReply: tcp("203.0.113.5:1723", "198.51.100.1:61000")}
	fwd := ct.Flow{TupleOrig: tcp("203.0.113.5:50000", "198.51.100.1:1723"), TupleReply: tcp("192.168.1.20:1723", "203.0.113.5:50000")}
	for _, tc := range []struct {
		name     string
		f        ct.Flow
		seg      conntrack.Segment
		queries  int
		resolved bool
		public   string
	}{
		{"masquerade SYN", masq, conntrack.Segment{Src: ep("192.168.1.10:40000"), Dst: ep("203.0.113.5:1723"), SYN: true}, 0, false, ""},
		{"masquerade SYN-ACK", masq, conntrack.Segment{Src: ep("203.0.113.5:1723"), Dst: ep("192.168.1.10:40000"), SYN: true, ACK: true}, 1, true, "198.51.100.1:61000"},
		{"masquerade data", masq, conntrack.Segment{Src: ep("192.168.1.10:40000"), Dst: ep("203.0.113.5:1723"), ACK: true}, 1, true, "198.51.100.1:61000"},
		{"port-forward SYN-ACK", fwd, conntrack.Segment{Src: ep("192.168.1.20:1723"), Dst: ep("203.0.113.5:50000"), SYN: true, ACK: true}, 2, true, "198.51.100.1:1723"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := &oneFlow{f: tc.f}
			r := &liveResolver{ct: table, log: zap.NewNop()}
			spec, ok := r.ResolveSegment(&tc.seg)
			if ok != tc.resolved || table.queries != tc.queries {
				t.Fatalf("resolved %v after %d queries, want %v after %d", ok, table.queries, tc.resolved, tc.queries)
			}
			if !ok {
				return
			}
			if got := toAP(spec.Public).String(); got != tc.public {
				t.Errorf("public %s, want %s", got, tc.public)
			}
			if want, _ := r.Resolve(tc.seg.Src, tc.seg.Dst); want != spec {
				t.Errorf("ResolveSegment %+v, Resolve %+v", spec, want)
			}
		})
	}
}
