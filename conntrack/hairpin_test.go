package conntrack_test

import (
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// hairpinResolver places a hairpin port-forward: an inside client reaches
// the inside PAC through the public address, and SNAT gives the client
// the router's LAN address, so the kernel names the peer snat while the
// segments carry the client's own endpoint.
type hairpinResolver struct{ snat conntrack.Endpoint }

func (r hairpinResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if src.Port == 1723 {
		src, dst = dst, src
	}
	return conntrack.ConnSpec{Inside: dst, Outside: r.snat, Public: ep(pub1, 1723)}, true
}

// TestHairpinConn: a connection whose segments carry other endpoints than
// its Inside and Outside is found by them (one connection, not one per
// segment), calls through it, and leaves nothing behind.
func TestHairpinConn(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	snat := ep(addr("10.0.1.254"), 61000)
	f := pacFlow(t, tbl, hairpinResolver{snat}, srv1, cli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x0777))
	f.send(dirOut, ocrp(0x0040, 0x0777, 1))
	conns := tbl.Conns()
	if len(conns) != 1 || conns[0].Outside != snat || conns[0].Inside != ep(srv1, 1723) {
		t.Fatalf("conns %+v, want one from %v to %v", conns, ep(srv1, 1723), snat)
	}
	if _, calls, ok := tbl.ConnCalls(ep(cli1, 50000), ep(srv1, 1723)); !ok || len(calls) != 1 || calls[0].State != conntrack.StateEstablished {
		t.Fatalf("ConnCalls by the segments' endpoints: %v %+v", ok, calls)
	}
	if err := tbl.CheckIndex(); err != nil {
		t.Fatal(err)
	}
	wantStats(t, tbl, map[string]uint64{"control_conns_opened": 1, "calls_active": 1})
	f.rst(dirIn)
	tbl.Expire(f.now + int64(time.Hour))
	wantEmpty(t, tbl)
}
