package ha_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/ha"
	"github.com/pptpgw/pptpgw/nat/ha/etcdtest"
)

// node is one gateway of a pair: a table and its replicator running.
type node struct {
	name   string
	tbl    *conntrack.Table
	r      *ha.Replicator
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startNode(t *testing.T, e *etcdtest.Etcd, name string, ttl time.Duration) *node {
	t.Helper()
	return startNodeAt(t, []string{e.URL}, name, ttl)
}

func startNodeAt(t *testing.T, endpoints []string, name string, ttl time.Duration) *node {
	t.Helper()
	n := &node{name: name, tbl: conntrack.New(conntrack.Limits{MaxCalls: 100000}, nil)}
	var err error
	n.r, err = ha.New(ha.Config{Endpoints: endpoints, Node: name, Prefix: "/test/", LeaseTTL: ttl,
		OpTimeout: time.Second, Log: zaptest.NewLogger(t).Named(name)}, n.tbl)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.r.Run(ctx)
	}()
	t.Cleanup(n.stop)
	return n
}

// stop ends the replicator (its lease stays until it runs out: a crash).
func (n *node) stop() {
	n.cancel()
	n.wg.Wait()
}

// calls lists "node outer-ID inside" of every call n holds.
func (n *node) calls() []string {
	var out []string
	for _, c := range n.tbl.Calls() {
		out = append(out, fmt.Sprintf("%s %d %v:%d", c.Conn.Node, c.OuterID, c.Inside, c.InsideID))
	}
	sort.Strings(out)
	return out
}

// eventually waits up to d for cond.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func same(got []string, want ...string) func() bool {
	return func() bool { return strings.Join(got, ",") == strings.Join(want, ",") }
}

// Every node holds every call with the same outer IDs; a call ending on
// one ends on the other; a new call on the standby gets an outer ID the
// active node's calls do not hold.
func TestReplicatesCalls(t *testing.T) {
	e := etcdtest.Start(t)
	a := startNode(t, e, "a", 10*time.Second)
	b := startNode(t, e, "b", 10*time.Second)
	c1 := newPNS(t, a.tbl, addr("192.168.1.10"), 40001)
	o1 := c1.call(0, 0x100)
	c2 := newPNS(t, a.tbl, addr("192.168.1.11"), 40002)
	o2 := c2.call(0, 0x200)
	if o1 == o2 {
		t.Fatalf("outer IDs %d %d", o1, o2)
	}
	want := []string{fmt.Sprintf("a %d 192.168.1.10:0", o1), fmt.Sprintf("a %d 192.168.1.11:0", o2)}
	eventually(t, 5*time.Second, "b holds a's calls", func() bool { return same(b.calls(), want...)() })
	// A client of b's own with the same Call ID towards the same PAC.
	c3 := newPNS(t, b.tbl, addr("192.168.1.12"), 40003)
	if o3 := c3.call(0, 0x300); o3 == o1 || o3 == o2 {
		t.Fatalf("b handed out outer %d, held by a's calls %d %d", o3, o1, o2)
	}
	eventually(t, 5*time.Second, "a holds b's call", func() bool { return len(a.calls()) == 3 })
	// c2 hangs up on a: b forgets it.
	c2.seg(0, false, pptpmsg.NewCCRQ(0))
	c2.seg(1, false, pptpmsg.NewCDN(0x200, 3))
	eventually(t, 5*time.Second, "b drops the call a ended", func() bool { return len(b.calls()) == 2 })
	st := b.r.Stats()
	if st["ha_connected"] != 1 || st["ha_imported"] == 0 || st["ha_errors"] != 0 {
		t.Errorf("b's stats %v", st)
	}
}

// etcd gone: the node works on, counts what waits, and publishes it when
// etcd is back.
func TestEtcdOutage(t *testing.T) {
	e := etcdtest.Start(t)
	a := startNode(t, e, "a", 10*time.Second)
	b := startNode(t, e, "b", 10*time.Second)
	c1 := newPNS(t, a.tbl, addr("192.168.1.10"), 40001)
	o1 := c1.call(1, 0x100)
	eventually(t, 5*time.Second, "b holds the first call", func() bool { return len(b.calls()) == 1 })
	e.Stop()
	start := time.Now()
	c2 := newPNS(t, a.tbl, addr("192.168.1.11"), 40002)
	o2 := c2.call(1, 0x200)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("a call set up with etcd gone took %v", d)
	}
	eventually(t, 5*time.Second, "a counts what waits", func() bool {
		st := a.r.Stats()
		return st["ha_errors"] > 0 && st["ha_pending"] > 0 && st["ha_connected"] == 0
	})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("a %d 192.168.1.10:1", o1), fmt.Sprintf("a %d 192.168.1.11:1", o2)}
	eventually(t, 15*time.Second, "b learns the call set up while etcd was gone", func() bool { return same(b.calls(), want...)() })
	eventually(t, 5*time.Second, "a has nothing pending", func() bool { return a.r.Stats()["ha_pending"] == 0 })
}

// A dies: its records go when its lease runs out. b keeps the call whose
// traffic it carried meanwhile (and publishes it as its own), drops the
// one nobody carried; a restarted without a state file learns them back.
func TestTakeover(t *testing.T) {
	e := etcdtest.Start(t)
	a := startNode(t, e, "a", 3*time.Second)
	b := startNode(t, e, "b", 3*time.Second)
	c1 := newPNS(t, a.tbl, addr("192.168.1.10"), 40001)
	o1 := c1.call(1, 0x100)
	c2 := newPNS(t, a.tbl, addr("192.168.1.11"), 40002)
	c2.call(2, 0x200)
	eventually(t, 5*time.Second, "b holds a's calls", func() bool { return len(b.calls()) == 2 })
	a.stop() // a crash: nothing revoked
	// The addresses moved: c1's GRE passes b.
	if _, id, v := b.tbl.GREIn(pac, public, o1, 100, time.Now().UnixNano()); v != conntrack.GREForward || id != 1 {
		t.Fatalf("b's GRE of a's call: %v %d", v, id)
	}
	want := fmt.Sprintf(" %d 192.168.1.10:1", o1)
	eventually(t, 10*time.Second, "b adopts the call it carries, drops the other", func() bool { return same(b.calls(), want)() })
	if st := b.r.Stats(); st["ha_adopted"] != 1 || st["ha_dropped"] != 1 {
		t.Errorf("b's stats %v", st)
	}
	// a restarts with an empty table: it learns b's call.
	a2 := startNode(t, e, "a", 3*time.Second)
	eventually(t, 5*time.Second, "a learns b's call", func() bool { return same(a2.calls(), "b"+want)() })
	// The echoes on c1's control connection now pass b.
	c1.on(b.tbl).seg(0, false, pptpmsg.NewEchoRQ(7))
	if got := b.calls(); len(got) != 1 || !strings.HasPrefix(got[0], " ") {
		t.Errorf("b's calls %v", got)
	}
}

// A node started while etcd is away works, and publishes its state once
// etcd is there.
func TestStartWithoutEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	e.Stop()
	a := startNode(t, e, "a", 10*time.Second)
	c1 := newPNS(t, a.tbl, addr("192.168.1.10"), 40001)
	o1 := c1.call(1, 0x100)
	c2 := newPNS(t, a.tbl, addr("192.168.1.11"), 40002)
	c2.call(1, 0x200)
	c2.seg(0, false, pptpmsg.NewCCRQ(1))
	c2.seg(1, false, pptpmsg.NewCDN(0x200, 3))
	eventually(t, 10*time.Second, "a counts etcd's absence", func() bool {
		st := a.r.Stats()
		return st["ha_connected"] == 0 && st["ha_errors"] > 0 && st["ha_lag_ms"] > 0
	})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, e, "b", 10*time.Second)
	want := fmt.Sprintf("a %d 192.168.1.10:1", o1)
	eventually(t, 15*time.Second, "b holds a's one call", func() bool { return same(b.calls(), want)() })
}

// Three etcd members: replication goes on with one lost, and stops with
// two lost (no majority: why a pair needs a third member, not a second),
// the gateways working on and catching up when one is back.
func TestThreeMembers(t *testing.T) {
	ms := etcdtest.StartCluster(t, 3)
	a := startNodeAt(t, etcdtest.URLs(ms), "a", 10*time.Second)
	b := startNodeAt(t, etcdtest.URLs(ms), "b", 10*time.Second)
	newPNS(t, a.tbl, addr("192.168.1.10"), 40001).call(1, 0x100)
	eventually(t, 5*time.Second, "b holds the first call", func() bool { return len(b.calls()) == 1 })
	ms[0].Stop()
	newPNS(t, a.tbl, addr("192.168.1.11"), 40002).call(1, 0x200)
	eventually(t, 10*time.Second, "b holds the call set up with one member lost", func() bool { return len(b.calls()) == 2 })
	ms[1].Stop()
	newPNS(t, a.tbl, addr("192.168.1.12"), 40003).call(1, 0x300)
	eventually(t, 10*time.Second, "a counts what waits with two members lost", func() bool {
		st := a.r.Stats()
		return st["ha_pending"] > 0 && st["ha_errors"] > 0
	})
	if n := len(b.calls()); n != 2 {
		t.Errorf("b holds %d calls with no majority, want 2", n)
	}
	if err := ms[1].Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "b holds the call set up without a majority", func() bool { return len(b.calls()) == 3 })
}

// TLS to etcd with a client certificate (--ha-etcd-ca/-cert/-key).
func TestTLS(t *testing.T) {
	p := etcdtest.NewPKI(t)
	e := etcdtest.StartTLS(t, p)
	tbls := map[string]*conntrack.Table{}
	for _, name := range []string{"a", "b"} {
		tbls[name] = conntrack.New(conntrack.Limits{}, nil)
		r, err := ha.New(ha.Config{Endpoints: []string{e.URL}, Node: name, CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey,
			OpTimeout: time.Second, Log: zaptest.NewLogger(t).Named(name)}, tbls[name])
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	newPNS(t, tbls["a"], addr("192.168.1.10"), 40001).call(1, 0x100)
	eventually(t, 5*time.Second, "b holds a's call over TLS", func() bool { return len(tbls["b"].Calls()) == 1 })
	if _, err := ha.New(ha.Config{Endpoints: []string{e.URL}, Node: "c", CertFile: p.ClientCert}, conntrack.New(conntrack.Limits{}, nil)); err == nil {
		t.Error("a certificate without its key: no error")
	}
}

// Bytes per call in etcd, and how many calls a second one node publishes
// (PPTPGW_HA_CALLS calls, default 2000).
func TestReplicationRate(t *testing.T) {
	e := etcdtest.Start(t)
	n := 2000
	if testing.Short() {
		n = 200
	}
	fmt.Sscan(envOr("PPTPGW_HA_CALLS", ""), &n)
	a := startNode(t, e, "a", 30*time.Second)
	b := startNode(t, e, "b", 30*time.Second)
	start := time.Now()
	for i := range n {
		p := newPNS(t, a.tbl, conntrack.Addr{192, 168, byte(1 + i/250), byte(1 + i%250)}, 40000)
		p.call(uint16(i), uint16(i))
	}
	setup := time.Since(start)
	eventually(t, 120*time.Second, "b holds every call", func() bool { return b.tbl.Stats()["calls_active"] == uint64(n) })
	took := time.Since(start)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(context.Background(), "/test/conns/a/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	bytes := 0
	for _, kv := range resp.Kvs {
		bytes += len(kv.Key) + len(kv.Value)
	}
	t.Logf("%d calls (one per control connection): set up in %v, on the standby after %v: %.0f calls/s replicated; %d bytes per call in etcd (key and value)",
		n, setup.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds(), bytes/max(len(resp.Kvs), 1))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
