package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/ha"
	"github.com/pptpgw/pptpgw/nat/ha/etcdtest"
)

// Two gateways of a pair: a call of the first is listed by the second
// with its node, and the replication's state is in Stats and Health.
func TestPairReplicates(t *testing.T) {
	e := etcdtest.Start(t)
	gws := map[string]*Gateway{}
	for _, name := range []string{"a", "b"} {
		cfg := Config{GREPath: PathQueue, HA: ha.Config{Endpoints: []string{e.URL}, Node: name, Prefix: "/gw-test/"}}
		g, _, err := testGateway(t, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { g.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		gws[name] = g
	}
	// A call of a's own (as a restart from etcd would bring it).
	cs := conntrack.ConnSnap{Inside: "192.168.1.10:40001", Outside: "198.51.100.10:1723", Public: "203.0.113.1:40001",
		Role: conntrack.RolePNSInside, LastSeen: time.Now().UnixNano(), Cur: -1, Resv: [2]int16{-1, -1},
		Calls: []conntrack.CallSnap{{Role: conntrack.RolePNSInside, State: conntrack.StateEstablished,
			Inside: "192.168.1.10", InsideID: 1, HasInside: true, Public: "203.0.113.1", OuterID: 1,
			Peer: "198.51.100.10", PeerID: 0x100, HasPeer: true, LastSeen: time.Now().UnixNano()}}}
	if _, err := gws["a"].Table().ImportConn("", cs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(gws["b"].Calls()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("b does not list a's call")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, g := range gws {
		c := g.Calls()[0]
		if c.Conn.Node != "a" || c.OuterID != 1 {
			t.Errorf("%s lists node %q outer %d, want a 1", name, c.Conn.Node, c.OuterID)
		}
		if s := g.Stats(); s["ha_connected"] != 1 || s["ha_errors"] != 0 {
			t.Errorf("%s: stats %v", name, s)
		}
		if r := g.Health(time.Now()).Replication; !r.Configured || !r.Connected || !strings.HasPrefix(r.Detail, "ha connected node="+name) {
			t.Errorf("%s: health %+v", name, r)
		}
	}
}
