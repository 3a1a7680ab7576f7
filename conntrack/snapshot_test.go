package conntrack_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pptpgw/pptpgw/conntrack"
)

// snapScene is a table with calls in every state and connections stopped
// in the middle of Call ID fields, and what happens to it afterwards.
type snapScene struct {
	res                      *fakeResolver
	a, b, c, pac, pac2, fill *flow
	ocrpOut, ocrpOut2        []byte // OCRPs from the inside PAC, cut in the middle
	ocrpIn                   []byte // an OCRP to cli3, cut between the bytes of @14
}

// before builds the scene on tbl.
func (s *snapScene) before(t *testing.T, tbl *conntrack.Table) {
	s.res = &fakeResolver{}
	// Bucket 0x00 towards rcli1 nearly full, so the reservation matters.
	s.fill = fill(t, tbl, s.res, clientAddr(200), rcli1, idRange(0x0000, 0x00FE)...)
	// Established calls with rewritten IDs, a pending one, a tombstone.
	s.a = pnsFlow(t, tbl, s.res, cli1, 40001, pac1)
	s.a.start()
	s.a.pnsCall(0, 0x100)
	s.b = pnsFlow(t, tbl, s.res, cli2, 40002, pac1)
	s.b.start()
	s.b.pnsCall(0, 0x101) // outer 1
	s.b.pnsCall(9, 0x109)
	s.b.send(dirOut, ocrq(5)) // pending
	if err := tbl.Delete(callName(pub1, pac1, 9), t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	tbl.GREIn(pac1, pub1, 1, 300, s.b.now)
	tbl.GREOut(cli2, pac1, 0x101, 200, s.b.now)
	// An inside PAC: a pending request from outside, and the PAC's OCRP
	// stopped between the two bytes of its Call ID (a slot reserved).
	s.pac = pacFlow(t, tbl, s.res, srv1, rcli1, 50000)
	s.pac.start()
	s.pac.send(dirIn, ocrq(0x777))
	s.pac.send(dirIn, ocrq(0x778)) // a second request, pending
	s.ocrpOut = ocrp(0x0010, 0x777, 1)
	s.pac.send(dirOut, s.ocrpOut[:13])
	// Another PAC connection stopped after its Call ID, before the result.
	s.pac2 = pacFlow(t, tbl, s.res, srv1, rcli2, 50001)
	s.pac2.start()
	s.pac2.send(dirIn, ocrq(0x999))
	s.ocrpOut2 = ocrp(0x0010, 0x999, 1)
	s.pac2.send(dirOut, s.ocrpOut2[:16])
	// A client whose OCRP is stopped between the two bytes of @14.
	s.c = pnsFlow(t, tbl, s.res, cli3, 40003, pac1)
	s.c.start()
	out := s.c.send(dirOut, ocrq(0x0001)) // 0 and 1 taken: outer 2
	if u16(out, 12) != 2 {
		t.Fatalf("outer %#04x", u16(out, 12))
	}
	s.ocrpIn = ocrp(0x102, 2, 1)
	s.c.send(dirIn, s.ocrpIn[:15])
}

// after continues the scene on tbl and returns every byte the table wrote
// and what GRE lookups said.
func (s *snapScene) after(t *testing.T, tbl *conntrack.Table) []string {
	for _, f := range []*flow{s.a, s.b, s.c, s.pac, s.pac2, s.fill} {
		f.tbl = tbl
		f.advance(time.Second)
	}
	var got []string
	rec := func(b []byte) { got = append(got, string(b)) }
	// A competitor for the last free slot of bucket 0x00 towards rcli1
	// comes before the rest of the cut OCRP.
	x := pnsFlow(t, tbl, s.res, clientAddr(201), 40000, rcli1)
	x.now = s.a.now
	x.start()
	rec(x.send(dirOut, ocrq(0x0042)))
	rec(s.pac.send(dirOut, s.ocrpOut[13:]))
	rec(s.pac2.send(dirOut, s.ocrpOut2[16:]))
	rec(s.c.send(dirIn, s.ocrpIn[15:]))
	rec(s.b.send(dirIn, ocrp(0x105, 5, 1)))
	rec(s.pac.send(dirOut, ocrp(0x0011, 0x778, 1)))
	rec(s.pac.send(dirIn, sli(u16([]byte(got[1]), 12))))
	rec(s.b.send(dirOut, ccrq(0)))
	rec(s.b.send(dirIn, cdn(0x109))) // ends the tombstone
	rec(s.a.send(dirOut, ocrq(1)))   // new allocations after the restore
	for _, q := range []struct {
		peer   conntrack.Addr
		outer  uint16
		inside conntrack.Addr
		peerID uint16
	}{{pac1, 0, cli1, 0x100}, {pac1, 1, cli2, 0x101}, {pac1, 2, cli3, 0x102}, {pac1, 5, cli2, 0x105},
		{pac1, 9, cli2, 0x109}, {rcli1, 0x10, srv1, 0x777}, {rcli2, 0x10, srv1, 0x999}} {
		a, id, v := tbl.GREIn(q.peer, pub1, q.outer, 10, s.a.now)
		p, w := tbl.GREOut(q.inside, q.peer, q.peerID, 10, s.a.now)
		got = append(got, fmt.Sprintf("GREIn %v/%#04x: %v %#04x %v; GREOut %v/%#04x: %v %v", q.peer, q.outer, a, id, v, q.inside, q.peerID, p, w))
	}
	for _, v := range rows(tbl) {
		j, _ := json.Marshal(v)
		got = append(got, string(j))
	}
	return got
}

// A table snapshotted, written as JSON, read back and restored carries on
// exactly as the table that was never interrupted.
func TestSnapshotRestoreContinues(t *testing.T) {
	var plain snapScene
	t1 := newTable(bigLimits)
	plain.before(t, t1)
	want := plain.after(t, t1)

	var s snapScene
	t2 := newTable(bigLimits)
	s.before(t, t2)
	callsBefore := rows(t2)
	bucket := t2.BucketUse(rcli1, 0x00)
	data, err := json.Marshal(t2.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap conntrack.Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Version != conntrack.SnapshotVersion {
		t.Errorf("version %d", snap.Version)
	}
	again, _ := json.Marshal(snap)
	if string(again) != string(data) {
		t.Errorf("JSON round trip changed the snapshot")
	}
	t3 := newTable(bigLimits)
	skipped, err := t3.Restore(snap)
	if err != nil || skipped != 0 {
		t.Fatalf("Restore: %d %v", skipped, err)
	}
	if diff := cmp.Diff(callsBefore, rows(t3)); diff != "" {
		t.Errorf("restored calls (-before +restored):\n%s", diff)
	}
	if n := t3.BucketUse(rcli1, 0x00); n != bucket || n != 256 {
		t.Errorf("bucket use after restore %d, before %d (want 256: 255 calls and the PAC's reservation)", n, bucket)
	}
	st2, st3 := t2.Stats(), t3.Stats()
	for _, k := range []string{"calls_active", "calls_pending", "control_conns_active"} {
		if st2[k] != st3[k] {
			t.Errorf("%s: %d before, %d restored", k, st2[k], st3[k])
		}
	}
	if s2, s3 := t2.Sizes(), t3.Sizes(); s2 != s3 {
		t.Errorf("sizes before %+v, restored %+v", s2, s3)
	}
	got := s.after(t, t3)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored table differs from the uninterrupted one (-want +got):\n%s", diff)
	}
	// Spot checks of what the scene is about.
	if o := u16([]byte(got[0]), 12); o != 0x0142 {
		t.Errorf("competitor got %#04x, want 0x0142 (bucket 0x00 full with the reservation)", o)
	}
	pacOut := []byte(s.ocrpOut[:13])
	pacOut = append(pacOut, []byte(got[1])...)
	if o := u16(pacOut, 12); o != 0x00FF {
		t.Errorf("cut OCRP got outer %#04x, want the reserved slot in bucket 0x00", o)
	}
	cIn := append(append([]byte(nil), s.ocrpIn[:15]...), got[3]...)
	if u16(cIn, 14) != 1 {
		t.Errorf("cut OCRP @14 restored to %#04x, want 1", u16(cIn, 14))
	}
}

func TestSnapshotNewerVersionRefused(t *testing.T) {
	var s snapScene
	t1 := newTable(bigLimits)
	s.before(t, t1)
	snap := t1.Snapshot()
	snap.Version = conntrack.SnapshotVersion + 1
	t2 := newTable(conntrack.Limits{})
	if _, err := t2.Restore(snap); err == nil {
		t.Errorf("newer version restored")
	}
	wantEmpty(t, t2)
}

// Damaged entries are skipped and counted; the rest is restored.
func TestSnapshotDamagedEntries(t *testing.T) {
	var s snapScene
	t1 := newTable(bigLimits)
	s.before(t, t1)
	snap := t1.Snapshot()
	var damagedCalls int
	for i := range snap.Conns {
		cs := &snap.Conns[i]
		switch {
		case strings.HasPrefix(cs.Inside, "10.0.0.1:"): // cli1's connection
			cs.Outside = "not-an-address"
		case strings.HasPrefix(cs.Inside, "10.0.0.2:"): // cli2's: damage one call
			for j := range cs.Calls {
				if cs.Calls[j].OuterID == 1 {
					cs.Calls[j].Peer = "2001:db8::1"
					damagedCalls++
				}
			}
		}
	}
	if damagedCalls != 1 {
		t.Fatalf("scene changed")
	}
	t2 := newTable(bigLimits)
	skipped, err := t2.Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 2 {
		t.Errorf("skipped %d, want 2 (a connection and a call)", skipped)
	}
	ids := callIDs(t2)
	for _, id := range ids {
		if id == callName(pub1, pac1, 0) || id == callName(pub1, pac1, 1) {
			t.Errorf("damaged entry restored: %s", id)
		}
	}
	if len(ids) != len(rows(t1))-2 {
		t.Errorf("restored %d calls of %d: %v", len(ids), len(rows(t1)), ids)
	}
	if _, _, v := t2.GREIn(pac1, pub1, 2, 1, t0.UnixNano()); v != conntrack.GRERefused {
		t.Errorf("cli3's pending call: %v", v) // restored, still pending
	}
	// A snapshot entry that collides with one restored already is skipped.
	snap2 := t1.Snapshot()
	snap2.Conns = append(snap2.Conns, snap2.Conns[0])
	t3 := newTable(bigLimits)
	if skipped, err := t3.Restore(snap2); err != nil || skipped != 1 {
		t.Errorf("duplicate connection: skipped %d err %v", skipped, err)
	}
}
