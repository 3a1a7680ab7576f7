package conntrack_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pptpgw/pptpgw/conntrack"
)

// replicate copies every record from's publisher would send into to, as
// node's, through JSON like etcd carries them.
func replicate(t *testing.T, from, to *conntrack.Table, node string, since uint64) uint64 {
	t.Helper()
	recs, _, seq := from.ReplicaChanges(since)
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var cs conntrack.ConnSnap
		if err := json.Unmarshal(data, &cs); err != nil {
			t.Fatal(err)
		}
		if res, err := to.ImportConn(node, cs); err != nil || res != conntrack.Imported {
			t.Fatalf("ImportConn %s: %d %v", r.Inside, res, err)
		}
	}
	return seq
}

// A standby that imported the active node's records carries on exactly as
// the active node would have: the same rewrites, the same GRE mappings,
// new calls through it get outer IDs that collide with none of the old.
func TestReplicaTakeoverContinues(t *testing.T) {
	var plain snapScene
	t1 := newTable(bigLimits)
	plain.before(t, t1)
	want := plain.after(t, t1)

	var s snapScene
	a := newTable(bigLimits)
	a.EnableReplica()
	s.before(t, a)
	callsBefore := rows(a)
	b := newTable(bigLimits)
	b.EnableReplica()
	replicate(t, a, b, "a", 0)
	if diff := cmp.Diff(callsBefore, rows(b)); diff != "" {
		t.Errorf("imported calls (-active +standby):\n%s", diff)
	}
	for _, c := range b.Calls() {
		if c.Conn.Node != "a" {
			t.Fatalf("call %s node %q, want a", c.ID(), c.Conn.Node)
		}
	}
	if recs, _, _ := b.ReplicaChanges(0); len(recs) != 0 {
		t.Errorf("standby publishes %d records of the active node's", len(recs))
	}
	if n := b.BucketUse(rcli1, 0x00); n != 256 {
		t.Errorf("bucket use on the standby %d, want 256 (the reservation travels)", n)
	}
	got := s.after(t, b)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("standby differs from the uninterrupted active node (-want +got):\n%s", diff)
	}
	// Connections whose segments passed the standby are its own now.
	recs, _, _ := b.ReplicaChanges(0)
	if len(recs) < 5 {
		t.Errorf("standby owns %d connections after the takeover, want at least 5", len(recs))
	}
}

// Changes are pulled incrementally; a connection gone is reported once.
func TestReplicaChangesIncremental(t *testing.T) {
	res := &fakeResolver{}
	a := newTable(bigLimits)
	a.EnableReplica()
	f1 := pnsFlow(t, a, res, cli1, 40001, pac1)
	f1.start()
	f1.pnsCall(1, 0x100)
	f2 := pnsFlow(t, a, res, cli2, 40002, pac1)
	f2.start()
	recs, gone, seq := a.ReplicaChanges(0)
	if len(recs) != 2 || len(gone) != 0 {
		t.Fatalf("first look: %d records, %d gone", len(recs), len(gone))
	}
	if recs, _, _ := a.ReplicaChanges(seq); len(recs) != 0 {
		t.Fatalf("nothing changed, %d records", len(recs))
	}
	f2.send(dirOut, echoRQ())
	recs, _, seq = a.ReplicaChanges(seq)
	if len(recs) != 1 || recs[0].Inside != "10.0.0.2:40002" {
		t.Fatalf("after f2's echo: %+v", recs)
	}
	// GRE alone is not a change worth a record.
	a.GREIn(pac1, pub1, 1, 100, f1.now)
	if recs, _, _ := a.ReplicaChanges(seq); len(recs) != 0 {
		t.Fatalf("GRE made %d records", len(recs))
	}
	f1.rst(dirOut)
	a.Expire(f1.now + int64(time.Hour))
	_, gone, _ = a.ReplicaChanges(seq)
	want := []string{conntrack.ReplicaKey(ep(cli1, 40001), ep(pac1, 1723))}
	if diff := cmp.Diff(want, gone); len(gone) < 1 || gone[0] != want[0] {
		t.Fatalf("gone %v: %s", gone, diff)
	}
}

// Imported calls reserve their outer IDs; a deleted record takes its
// calls along unless this node carried their traffic since (adopted);
// the newer of two records wins; another node's calls never expire here.
func TestReplicaImportDrop(t *testing.T) {
	res := &fakeResolver{}
	a := newTable(bigLimits)
	a.EnableReplica()
	fa := pnsFlow(t, a, res, cli1, 40001, pac1)
	fa.start()
	outerA := fa.pnsCall(7, 0x100)
	fa2 := pnsFlow(t, a, res, cli3, 40003, pac1)
	fa2.start()
	fa2.pnsCall(9, 0x300)
	b := newTable(bigLimits)
	b.EnableReplica()
	replicate(t, a, b, "a", 0)
	// A client of b's own asks for the same inside ID towards the same PAC.
	fb := pnsFlow(t, b, res, cli2, 40002, pac1)
	fb.now = fa.now
	fb.start()
	if outerB := fb.pnsCall(7, 0x200); outerB == outerA {
		t.Fatalf("b handed out outer %#04x, which a's call holds", outerB)
	}
	// Expiry leaves another node's calls alone.
	b.Expire(fa.now + int64(48*time.Hour))
	if n := len(b.ReplicaForeign()["a"]); n != 2 {
		t.Fatalf("after expiry b holds %d of a's connections, want 2", n)
	}
	// An older record does not replace a newer copy.
	stale, _, _ := a.ReplicaChanges(0)
	fa.advance(time.Second)
	fa.send(dirOut, echoRQ())
	replicate(t, a, b, "a", 0)
	for _, r := range stale {
		if r.Inside == "10.0.0.1:40001" {
			if res, _ := b.ImportConn("c", r); res != conntrack.ImportOlder {
				t.Errorf("stale record from c: %d, want ImportOlder", res)
			}
		}
	}
	// b carried GRE of the first call: a's record of it (a back as
	// standby, republishing) no longer replaces b's copy, which becomes
	// b's own. The deletion of a's record of the second (a's lease ran
	// out), which had no traffic here, takes it away.
	b.GREIn(pac1, pub1, outerA, 100, fa.now+int64(time.Second))
	k1 := conntrack.ReplicaKey(ep(cli1, 40001), ep(pac1, 1723))
	k3 := conntrack.ReplicaKey(ep(cli3, 40003), ep(pac1, 1723))
	recs, _, _ := a.ReplicaChanges(0)
	for _, r := range recs {
		if r.Inside == "10.0.0.1:40001" {
			if res, err := b.ImportConn("a", r); err != nil || res != conntrack.ImportAdopted {
				t.Fatalf("a's record of a connection b carries: %d %v, want ImportAdopted", res, err)
			}
		}
	}
	if adopted, err := b.DropReplica("a", k1); err != nil || adopted {
		t.Fatalf("drop %s, b's own now: adopted %v %v", k1, adopted, err)
	}
	if adopted, err := b.DropReplica("a", k3); err != nil || adopted {
		t.Fatalf("drop %s: adopted %v %v", k3, adopted, err)
	}
	if _, _, ok := b.ConnCalls(ep(cli3, 40003), ep(pac1, 1723)); ok {
		t.Errorf("dropped connection still there")
	}
	info, calls, ok := b.ConnCalls(ep(cli1, 40001), ep(pac1, 1723))
	if !ok || len(calls) != 1 || info.Node != "" {
		t.Fatalf("adopted connection: %v %+v %d calls", ok, info, len(calls))
	}
	if _, id, v := b.GREIn(pac1, pub1, outerA, 10, fa.now); v != conntrack.GREForward || id != 7 {
		t.Errorf("adopted call's GRE: %v %#04x", v, id)
	}
	// a's stale record again (a relisting): b's copy stays b's.
	for _, r := range recs {
		if r.Inside == "10.0.0.1:40001" {
			if res, err := b.ImportConn("a", r); err != nil || res != conntrack.ImportOlder {
				t.Errorf("a's stale record of b's connection: %d %v, want ImportOlder", res, err)
			}
		}
	}
	if info, _, _ := b.ConnCalls(ep(cli1, 40001), ep(pac1, 1723)); info.Node != "" {
		t.Errorf("b's connection now %q's", info.Node)
	}
}
