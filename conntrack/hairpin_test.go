package conntrack_test

import (
	"encoding/json"
	"slices"
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

// pairResolver knows one hairpin connection, by the endpoints its
// segments carry (either way), as the kernel's conntrack table does.
type pairResolver struct{ a, b, snat conntrack.Endpoint }

func (r pairResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if (src != r.a || dst != r.b) && (src != r.b || dst != r.a) {
		return conntrack.ConnSpec{}, false
	}
	return hairpinResolver{r.snat}.Resolve(src, dst)
}

// TestHairpinRestore: a hairpin connection restored from the state file,
// or imported from a pair's record, is found by its segments' endpoints
// again (a call after the restore goes through it, not a second
// connection), is confirmed by them, and a record is replaced in place and
// dropped by its key.
func TestHairpinRestore(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	snat := ep(addr("10.0.1.254"), 61000)
	res := pairResolver{ep(cli1, 50000), ep(srv1, 1723), snat}
	f := pacFlow(t, tbl, res, srv1, cli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x0777))
	f.send(dirOut, ocrp(0x0040, 0x0777, 1))
	var b conntrack.StateBuf
	tbl.SnapshotTo(&b)
	want, err := json.Marshal(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("AppendJSON\n%s\nencoding/json\n%s", got, want)
	}
	var snap conntrack.Snapshot
	if err := json.Unmarshal(want, &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Conns) != 1 || !slices.Equal(snap.Conns[0].Seg, []string{"10.0.0.1:50000", "10.0.1.1:1723"}) {
		t.Fatalf("snapshot %s", want)
	}

	for _, seg := range [][]string{{"10.0.0.1:50000"}, {"10.0.0.1:50000", "10.0.1.1"}, {"x", "10.0.1.1:1723"}} {
		bad := conntrack.Snapshot{Version: snap.Version, Conns: slices.Clone(snap.Conns)}
		bad.Conns[0].Seg = seg
		if skipped, err := newTable(conntrack.Limits{}).Restore(bad); skipped != 1 || err != nil {
			t.Errorf("seg %q: %d skipped, %v; want the connection skipped", seg, skipped, err)
		}
	}
	restored := newTable(conntrack.Limits{})
	if skipped, err := restored.Restore(snap); skipped != 0 || err != nil {
		t.Fatalf("Restore: %d skipped, %v", skipped, err)
	}
	if confirmed, left := restored.ConfirmRestored(res); confirmed != 1 || left != 0 {
		t.Errorf("ConfirmRestored: %d confirmed, %d left", confirmed, left)
	}
	f.tbl = restored
	f.send(dirIn, ocrq(0x0778))
	f.send(dirOut, ocrp(0x0041, 0x0778, 1))
	_, calls, ok := restored.ConnCalls(ep(cli1, 50000), ep(srv1, 1723))
	if n := len(restored.Conns()); n != 1 || !ok || len(calls) != 2 {
		t.Fatalf("%d connections; by the segments' endpoints %v, calls %+v", n, ok, calls)
	}
	for _, k := range calls {
		if k.State != conntrack.StateEstablished {
			t.Errorf("call %+v", k)
		}
	}
	if err := restored.CheckIndex(); err != nil {
		t.Fatal(err)
	}

	pair := newTable(conntrack.Limits{})
	for range 2 {
		if _, err := pair.ImportConn("gw-b", snap.Conns[0]); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(pair.Conns()); n != 1 {
		t.Fatalf("%d connections after two imports of one record", n)
	}
	if _, err := pair.DropReplica("gw-b", conntrack.ReplicaKey(ep(srv1, 1723), snat)); err != nil {
		t.Fatal(err)
	}
	pair.Expire(f.now + int64(time.Hour))
	wantEmpty(t, pair)
}
