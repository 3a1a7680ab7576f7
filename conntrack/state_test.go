package conntrack_test

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// stateSignalled reports whether StateChanged holds a signal, and drains it.
func stateSignalled(tbl *conntrack.Table) bool {
	select {
	case <-tbl.StateChanged():
		return true
	default:
		return false
	}
}

// TestStateGeneration: what the state file must keep soon (connections and
// calls coming, settling and going) grows the state generation and signals
// once; control messages that only move stream positions do not.
func TestStateGeneration(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	res := &fakeResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	gen := tbl.StateGeneration()
	step := func(what string, wantChange bool, do func()) {
		t.Helper()
		do()
		g := tbl.StateGeneration()
		if changed := g != gen; changed != wantChange {
			t.Errorf("%s: generation %d -> %d, want changed=%v", what, gen, g, wantChange)
		}
		if s := stateSignalled(tbl); s != wantChange {
			t.Errorf("%s: signalled=%v, want %v", what, s, wantChange)
		}
		gen = g
	}
	step("connection opened", true, f.start)
	step("echo request and reply", false, func() { f.send(dirOut, echoRQ()); f.send(dirIn, echoRQ()) })
	var outer uint16
	step("call request (pending)", true, func() { outer = f.u16(f.send(dirOut, ocrq(0)), 12) })
	step("call reply (established)", true, func() { f.send(dirIn, ocrp(0x100, outer, 1)) })
	step("GRE", false, func() { tbl.GREIn(pac1, pub1, outer, 100, f.now); tbl.GREOut(cli1, pac1, 0x100, 100, f.now) })
	step("expiry with nothing due", false, func() { tbl.Expire(f.now) })
	step("call cleared", true, func() { f.send(dirIn, cdn(0x100)) })
	step("FIN", true, func() { f.fin(dirOut) })
}

func (f *flow) u16(b []byte, off int) uint16 { return u16(b, off) }

// restoredScene is a connection with one call (inside ID 0, PAC ID 0x100),
// snapshotted, then carried on (echoes both ways) in the original table:
// the snapshot is older than the streams, as after a crash.
func restoredScene(t *testing.T) (f *flow, outer uint16, snap conntrack.Snapshot) {
	tbl := newTable(conntrack.Limits{})
	f = pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	outer = f.pnsCall(0, 0x100)
	snap = tbl.Snapshot()
	f.send(dirOut, echoRQ())
	f.send(dirIn, echoRQ())
	return f, outer, snap
}

func restoreInto(t *testing.T, snap conntrack.Snapshot, l conntrack.Limits) *conntrack.Table {
	t.Helper()
	tbl := newTable(l)
	tbl.SetClock(func() int64 { return t0.UnixNano() })
	if skipped, err := tbl.Restore(snap); err != nil || skipped != 0 {
		t.Fatalf("Restore: skipped %d, %v", skipped, err)
	}
	return tbl
}

// TestRestoreStaleStream: a connection restored from a snapshot older than
// its streams resumes at the next segment in each direction, instead of
// dropping everything beyond the snapshot's position as a gap for ever.
func TestRestoreStaleStream(t *testing.T) {
	f, outer, snap := restoredScene(t)
	f.tbl = restoreInto(t, snap, conntrack.Limits{})
	out := f.send(dirOut, ccrq(0))
	if f.last.Drop || !f.last.Tracked {
		t.Fatalf("CCRQ after the restore: %+v, want tracked and passed", f.last)
	}
	if got := u16(out, 12); got != outer {
		t.Errorf("CCRQ Call ID rewritten to %#04x, want the outer %#04x", got, outer)
	}
	f.send(dirIn, cdn(0x100))
	if f.last.Drop {
		t.Fatalf("CDN after the restore dropped")
	}
	if r := rows(f.tbl); len(r) != 0 {
		t.Errorf("calls after CDN: %+v", r)
	}
	// A real gap afterwards is still one.
	f.next[dirOut] += 100
	f.send(dirOut, echoRQ())
	if !f.last.Drop {
		t.Errorf("a gap after the resumed walk passed")
	}
}

// TestRestoredRarePart: a restored connection keeps its restore time (in
// its rare part) until it is confirmed and shows a segment each way, then
// is as small as a new one; its end takes the part again.
func TestRestoredRarePart(t *testing.T) {
	f, _, snap := restoredScene(t)
	f.tbl = restoreInto(t, snap, conntrack.Limits{})
	parts := func(what string, want int) {
		t.Helper()
		if n := f.tbl.RareParts(); n != want {
			t.Errorf("%s: %d connections hold a rare part, want %d", what, n, want)
		}
	}
	parts("restored", 1)
	f.send(dirOut, echoRQ())
	parts("a segment out (in still stale)", 1)
	f.send(dirIn, echoRQ())
	parts("a segment each way", 0)
	f.fin(dirOut)
	parts("one FIN", 0)
	f.fin(dirIn)
	parts("ended", 1)
	if e := f.tbl.Snapshot().Conns[0].Ended; e != f.now {
		t.Errorf("snapshot's end %d, want %d", e, f.now)
	}
}

// TestRestoreUnconfirmed: restored connections the kernel's conntrack
// table does not know and that show no segment end after RestoreGrace;
// those it knows, or that show a segment, stay.
func TestRestoreUnconfirmed(t *testing.T) {
	const grace = 30 * time.Second
	l := conntrack.Limits{RestoreGrace: grace}
	for _, tc := range []struct {
		name      string
		known     bool // the kernel has the connection
		segment   bool // a segment passes after the restore
		wantConf  int
		wantLeft  int
		wantCalls int
	}{
		{"gone", false, false, 0, 1, 0},
		{"known to the kernel", true, false, 1, 0, 1},
		{"shows a segment", false, true, 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, snap := restoredScene(t)
			tbl := restoreInto(t, snap, l)
			conf, left := tbl.ConfirmRestored(&fakeResolver{refuse: !tc.known})
			if conf != tc.wantConf || left != tc.wantLeft {
				t.Errorf("ConfirmRestored = %d, %d, want %d, %d", conf, left, tc.wantConf, tc.wantLeft)
			}
			if tc.segment {
				f.tbl = tbl
				f.send(dirOut, echoRQ())
			}
			tbl.Expire(t0.Add(grace - time.Second).UnixNano())
			if n := len(rows(tbl)); n != 1 {
				t.Fatalf("%d calls before the grace ended, want 1", n)
			}
			tbl.Expire(t0.Add(grace).UnixNano())
			if n := len(rows(tbl)); n != tc.wantCalls {
				t.Errorf("%d calls after the grace, want %d", n, tc.wantCalls)
			}
		})
	}
}

// TestRestoredCallReplaced: after a reboot, the peer numbers its calls
// afresh: a new call with the restored one's inside address, peer and peer
// Call ID replaces it at once, in the table and in the fast path's desired
// state; a SYN on a restored connection's ports starts a new connection.
func TestRestoredCallReplaced(t *testing.T) {
	_, oldOuter, snap := restoredScene(t)
	tbl := restoreInto(t, snap, conntrack.Limits{})
	tbl.ConfirmRestored(&fakeResolver{refuse: true})
	res := &fakeResolver{}
	g := pnsFlow(t, tbl, res, cli1, 40002, pac1)
	g.start()
	newOuter := g.pnsCall(0, 0x100)
	r := rows(tbl)
	if len(r) != 1 || r[0].OuterCallID != newOuter || r[0].State != "established" {
		t.Fatalf("calls after the new call: %+v, want only the new one (outer %d; old %d)", r, newOuter, oldOuter)
	}
	maps, _ := tbl.Desired(nil)
	if len(maps) != 1 || maps[0].OuterID != newOuter {
		t.Errorf("desired %+v, want the new call's mapping only", maps)
	}
	if err := tbl.CheckIndex(); err != nil {
		t.Error(err)
	}

	// The same ports again: the SYN replaces the restored connection.
	tbl = restoreInto(t, snap, conntrack.Limits{})
	h := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	h.next = [2]uint32{5000, 9000}
	h.start()
	out := h.send(dirOut, ocrq(7))
	if h.last.Drop || !h.last.Tracked {
		t.Fatalf("OCRQ on the new connection: %+v", h.last)
	}
	h.send(dirIn, ocrp(0x200, u16(out, 12), 1))
	if r := rows(tbl); len(r) != 1 || r[0].InsideCallID != 7 || r[0].State != "established" {
		t.Errorf("calls: %+v, want the new connection's call only", r)
	}
}

// table10k is 10 000 calls, each on its own control connection.
func table10k(b *testing.B) *conntrack.Table {
	tbl := newTable(conntrack.Limits{MaxCalls: 20000})
	res := &fakeResolver{}
	for i := range 10000 {
		f := pnsFlow(b, tbl, res, clientAddr(i), 40000, pac1)
		f.noCheck = true
		f.start()
		f.pnsCall(0, uint16(i))
		f.send(dirOut, echoRQ())
	}
	return tbl
}

// BenchmarkSnapshot10k: the state file's snapshot of 10 000 calls, each on
// its own control connection: the time the control path waits for the
// read lock per write (the GRE path does not: it takes the read lock too).
// Snapshot is the Snapshot of tests and tools, SnapshotTo the state
// writer's copy into the buffers it reuses.
func BenchmarkSnapshot10k(b *testing.B) {
	tbl := table10k(b)
	b.Run("Snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s := tbl.Snapshot(); len(s.Conns) != 10000 {
				b.Fatal(len(s.Conns))
			}
		}
	})
	b.Run("SnapshotTo", func(b *testing.B) {
		b.ReportAllocs()
		var sb conntrack.StateBuf
		for b.Loop() {
			if tbl.SnapshotTo(&sb); sb.Conns() != 10000 {
				b.Fatal(sb.Conns())
			}
		}
	})
}

// BenchmarkStateEncode10k: the state file's encoding of 10 000 calls off
// the lock, by encoding/json (as before StateBuf), by AppendJSON and by
// EncodeTo (the state writer's, in 64 KiB chunks).
func BenchmarkStateEncode10k(b *testing.B) {
	tbl := table10k(b)
	var sb conntrack.StateBuf
	tbl.SnapshotTo(&sb)
	snap := sb.Snapshot()
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(snap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var data []byte
		for b.Loop() {
			data = sb.AppendJSON(data[:0])
		}
		b.SetBytes(int64(len(data)))
	})
	b.Run("EncodeTo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := sb.EncodeTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRestoreClearInWriteWindow: the client clears its calls one by one
// (CCRQ, wait for the CDN, next) and the daemon is killed after it passed
// the first CCRQ but before the state file had it: the restored table's
// client direction is one CCRQ behind. The first CDN (retransmitted after
// the restart) ends its call, and every later CCRQ is still rewritten to
// its call's outer Call ID.
func TestRestoreClearInWriteWindow(t *testing.T) {
	f, outers := callsToClear(t, 3)
	snap := f.tbl.Snapshot()
	f.send(dirOut, ccrq(0))
	f.tbl = restoreInto(t, snap, conntrack.Limits{})
	for i := range 3 {
		if i > 0 {
			out := f.send(dirOut, ccrq(uint16(i)))
			if f.last.Drop || !f.last.Tracked || u16(out, 12) != outers[i] {
				t.Fatalf("CCRQ %d after the restore: %+v, Call ID %#04x, want the outer %#04x", i, f.last, u16(out, 12), outers[i])
			}
		}
		f.send(dirIn, cdn(0x100+uint16(i)))
		if r := rows(f.tbl); len(r) != 2-i {
			t.Fatalf("after CDN %d: %d calls left, want %d", i, len(r), 2-i)
		}
	}
}

// TestRestoreClearVerdictLost: the daemon walked the first CCRQ and the
// state file has it, but the daemon was killed before its verdict: the
// client retransmits it to the restarted daemon, which gives it the
// rewrite its first copy got.
func TestRestoreClearVerdictLost(t *testing.T) {
	f, outers := callsToClear(t, 2)
	seq := f.next[dirOut]
	f.send(dirOut, ccrq(0))
	f.tbl = restoreInto(t, f.tbl.Snapshot(), conntrack.Limits{})
	if out := f.resend(dirOut, seq, ccrq(0)); f.last.Drop || u16(out, 12) != outers[0] {
		t.Fatalf("the retransmitted CCRQ: %+v, Call ID %#04x, want the outer %#04x", f.last, u16(out, 12), outers[0])
	}
	f.send(dirIn, cdn(0x100))
	if out := f.send(dirOut, ccrq(1)); f.last.Drop || u16(out, 12) != outers[1] {
		t.Fatalf("the next CCRQ: %+v, Call ID %#04x, want the outer %#04x", f.last, u16(out, 12), outers[1])
	}
}

// TestRestoreClearCoalesced: as TestRestoreClearVerdictLost, but the
// client sent its CCRQs back to back and retransmits them as one segment:
// the part the state file had is replayed from its rewrite records, the
// rest walked, every Call ID rewritten.
func TestRestoreClearCoalesced(t *testing.T) {
	f, outers := callsToClear(t, 3)
	seq := f.next[dirOut]
	f.send(dirOut, ccrq(0))
	f.tbl = restoreInto(t, f.tbl.Snapshot(), conntrack.Limits{})
	out := f.resend(dirOut, seq, cat(ccrq(0), ccrq(1), ccrq(2)))
	for i := range 3 {
		if f.last.Drop || u16(out, 16*i+12) != outers[i] {
			t.Fatalf("CCRQ %d in the coalesced retransmission: %+v, Call ID %#04x, want the outer %#04x", i, f.last, u16(out, 16*i+12), outers[i])
		}
	}
}

// callsToClear is a connection with n calls (inside Call IDs 0.., PAC Call
// IDs 0x100..) that its PNS is about to clear, and their outer Call IDs.
func callsToClear(t *testing.T, n int) (*flow, []uint16) {
	t.Helper()
	f := pnsFlow(t, newTable(conntrack.Limits{}), &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	var outers []uint16
	for i := range n {
		outers = append(outers, f.pnsCall(uint16(i), 0x100+uint16(i)))
	}
	return f, outers
}
