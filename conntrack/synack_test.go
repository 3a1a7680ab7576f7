package conntrack_test

import (
	"sync/atomic"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
)

// kernelResolver refuses its first question, like the live resolver: the
// opener's SYN reaches mangle FORWARD before the kernel has confirmed its
// conntrack entry, so ctnetlink does not know the connection until the
// SYN-ACK.
type kernelResolver struct {
	fakeResolver
	asked atomic.Int32
}

func (r *kernelResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if r.asked.Add(1) == 1 {
		return conntrack.ConnSpec{}, false
	}
	return r.fakeResolver.Resolve(src, dst)
}

// TestFirstSeenAtSYNACK: a connection first tracked at its SYN-ACK walks the
// opener's first message from its first byte, so a malformed one is counted
// (it used to be skipped silently by the search for a magic cookie), and a
// good one is walked as usual, whichever end opened.
func TestFirstSeenAtSYNACK(t *testing.T) {
	badCookie := sccrq()
	put16(badCookie, 4, 0xDEAD)
	for _, tc := range []struct {
		name  string
		flow  func(*conntrack.Table, conntrack.Resolver) *flow
		first []byte
		want  uint64
	}{
		{"pns inside, bad cookie", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pnsFlow(t, tb, r, cli1, 40000, pac1)
		}, badCookie, 1},
		{"pns inside, length 11", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pnsFlow(t, tb, r, cli1, 40000, pac1)
		}, func() []byte { b := sccrq(); put16(b, 0, 11); return b }(), 1},
		{"pac inside, bad cookie", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pacFlow(t, tb, r, srv1, rcli1, 40000)
		}, badCookie, 1},
		{"pns inside, good", func(tb *conntrack.Table, r conntrack.Resolver) *flow {
			return pnsFlow(t, tb, r, cli1, 40000, pac1)
		}, sccrq(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := conntrack.New(conntrack.Limits{}, nil)
			f := tc.flow(tbl, &kernelResolver{})
			opener := dirOut
			if f.ends[dirOut].Port == 1723 {
				opener = dirIn
			}
			f.noCheck = true // the SYN is not tracked
			f.open(opener)
			f.noCheck = false
			f.send(opener, tc.first)
			if !f.last.Tracked {
				t.Fatalf("the opener's first message was not tracked")
			}
			if got := tbl.Counters.Malformed.Load(); got != tc.want {
				t.Errorf("malformed = %d, want %d", got, tc.want)
			}
			if got := tbl.Counters.ControlMessages.Load(); tc.want == 0 && got != 1 {
				t.Errorf("control messages = %d, want 1", got)
			}
		})
	}
}

// oddResolver refuses every other question, starting with the first: each
// connection's SYN is unresolvable, its SYN-ACK resolves.
type oddResolver struct {
	fakeResolver
	asked atomic.Int32
}

func (r *oddResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if r.asked.Add(1)%2 == 1 {
		return conntrack.ConnSpec{}, false
	}
	return r.fakeResolver.Resolve(src, dst)
}

// TestPortReuseAfterReset: a new connection on the ports of one that ended
// (reset) within --close-linger is a new connection from its SYN-ACK on:
// its opener's data is walked from its first byte, not taken for bytes
// beyond a gap (dropped) or retransmissions (never walked) of the old one.
func TestPortReuseAfterReset(t *testing.T) {
	for _, isn := range []uint32{500000, 0x80000000} { // ahead of, and behind, the old stream
		tbl := conntrack.New(conntrack.Limits{}, nil)
		res := &oddResolver{}
		f := pnsFlow(t, tbl, res, cli1, 40000, pac1)
		f.noCheck = true
		f.open(dirOut)
		f.noCheck = false
		f.send(dirOut, sccrq())
		f.rst(dirOut)
		// The old SYN-ACK again (a retransmission): no new connection.
		dup := &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: 0xFFFFFF00, Ack: 1001, SYN: true, ACK: true}
		res.asked.Store(1) // resolvable, as a SYN-ACK is
		if r := tbl.Control(dup, f.now, res); !r.Tracked {
			t.Errorf("ISN %d: the duplicate SYN-ACK not tracked", isn)
		}
		res.asked.Store(0) // the next SYN is refused again
		if got := tbl.Counters.ConnsOpened.Load(); got != 1 {
			t.Errorf("ISN %d: %d connections opened after a duplicate SYN-ACK, want 1", isn, got)
		}
		g := pnsFlow(t, tbl, res, cli1, 40000, pac1)
		g.next = [2]uint32{isn, 7777}
		g.noCheck = true
		g.open(dirOut)
		g.noCheck = false
		g.send(dirOut, sccrq())
		if !g.last.Tracked || g.last.Drop {
			t.Fatalf("ISN %d: the new connection's SCCRQ: %+v", isn, g.last)
		}
		if got := tbl.Counters.ControlMessages.Load(); got != 2 {
			t.Errorf("ISN %d: control messages = %d, want 2", isn, got)
		}
		g.pnsCall(7, 99)
		if got := tbl.Counters.ConnsOpened.Load(); got != 2 {
			t.Errorf("ISN %d: %d connections opened, want 2", isn, got)
		}
	}
}

// TestPortReuseUnseenEnd: a new connection on the ports of one whose end
// pptpgw never saw (it passed during a firewall reload, or just before a
// crash the state file had not caught up with) is a new connection from
// the SYN-ACK that answers its SYN, as the kernel's conntrack resyncs: the
// old one's calls end, and the same inside Call ID is a new call that the
// PAC's reply establishes. A SYN-ACK that answers no SYN seen changes
// nothing.
func TestPortReuseUnseenEnd(t *testing.T) {
	established := func(tbl *conntrack.Table) (n int, peer uint16) {
		peers := establishedPeers(tbl)
		if len(peers) > 0 {
			peer = peers[len(peers)-1]
		}
		return len(peers), peer
	}
	tbl := conntrack.New(conntrack.Limits{}, nil)
	res := &oddResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	f.noCheck = true
	f.open(dirOut)
	f.noCheck = false
	f.send(dirOut, sccrq())
	f.send(dirIn, sccrp())
	f.pnsCall(7, 99)

	stray := &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: 123456, Ack: 424242, SYN: true, ACK: true}
	res.asked.Store(1) // a SYN-ACK resolves
	tbl.Control(stray, f.now, res)
	if n, _ := established(tbl); n != 1 || tbl.Counters.ConnsOpened.Load() != 1 {
		t.Fatalf("a SYN-ACK answering no SYN: %d calls established, %d connections opened", n, tbl.Counters.ConnsOpened.Load())
	}

	g := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	g.next = [2]uint32{700000, 9000}
	res.asked.Store(1) // the SYN is noted on the old connection (stray until its SYN-ACK answers it), not asked about; its SYN-ACK resolves
	g.noCheck = true
	g.open(dirOut)
	g.noCheck = false
	if got := tbl.Counters.ConnsOpened.Load(); got != 2 {
		t.Fatalf("%d connections opened, want the new one", got)
	}
	if n, _ := established(tbl); n != 0 {
		t.Fatalf("%d calls of the old connection left", n)
	}
	g.send(dirOut, sccrq())
	g.send(dirIn, sccrp())
	g.pnsCall(7, 100)
	if n, peer := established(tbl); n != 1 || peer != 100 {
		t.Fatalf("the new connection's call: %d established, PAC Call ID %d", n, peer)
	}
}

// TestPortReuseAfterRestore: the state file still has a connection whose
// end came just before a crash; after the restart a new connection on its
// ports shows its SYN-ACK only (its SYN passed while the daemon was down):
// it is a new connection, the restored one's calls end, and the new one's
// call on the same inside Call ID establishes.
func TestPortReuseAfterRestore(t *testing.T) {
	tbl, res := restoredCall(t)
	g := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	g.next = [2]uint32{700000, 9000}
	g.syn[dirOut] = true // the SYN went by unseen
	g.next[dirOut]++
	g.noCheck = true
	g.segment(dirIn, true, false, false, nil)
	g.segment(dirOut, false, false, false, nil)
	g.noCheck = false
	g.send(dirOut, sccrq())
	g.send(dirIn, sccrp())
	g.pnsCall(7, 100)
	if peers := establishedPeers(tbl); len(peers) != 1 || peers[0] != 100 {
		t.Fatalf("established calls' PAC Call IDs %v, want the new connection's 100 only", peers)
	}
}

// TestRestoredPortsTakenWhileDown: the state file still has a connection
// that ended just before a crash, and a new connection took its ports
// with a handshake the dying daemon walked: the restarted daemon first
// sees its data, far from the saved position. It is a new connection
// picked up mid-stream; the restored one's calls end and the new call on
// the same inside Call ID establishes.
func TestRestoredPortsTakenWhileDown(t *testing.T) {
	tbl, res := restoredCall(t)
	g := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	g.next, g.syn = [2]uint32{0x70000000, 0x20000000}, [2]bool{true, true}
	g.send(dirOut, sccrq())
	g.send(dirIn, sccrp())
	g.pnsCall(7, 100)
	if peers := establishedPeers(tbl); len(peers) != 1 || peers[0] != 100 {
		t.Fatalf("established calls' PAC Call IDs %v, want the new connection's 100 only", peers)
	}
}

// restoredCall is a table restored from the state of a connection with one
// call (inside Call ID 7, PAC Call ID 99) whose end the state file missed,
// its ports confirmed by the kernel (a new connection's entry has them).
func restoredCall(t *testing.T) (*conntrack.Table, *fakeResolver) {
	t.Helper()
	tbl := conntrack.New(conntrack.Limits{}, nil)
	res := &fakeResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	f.start()
	f.pnsCall(7, 99)
	snap := tbl.Snapshot()
	tbl = conntrack.New(conntrack.Limits{}, nil)
	if skipped, err := tbl.Restore(snap); err != nil || skipped != 0 {
		t.Fatalf("Restore: %d skipped, %v", skipped, err)
	}
	if confirmed, _ := tbl.ConfirmRestored(res); confirmed != 1 {
		t.Fatalf("%d restored connections confirmed, want 1", confirmed)
	}
	return tbl, res
}

// establishedPeers are the PAC Call IDs of tbl's established calls.
func establishedPeers(tbl *conntrack.Table) []uint16 {
	var peers []uint16
	for _, c := range tbl.Calls() {
		if c.State == conntrack.StateEstablished {
			peers = append(peers, c.PeerID)
		}
	}
	return peers
}

// TestStraySegments: a SYN or SYN-ACK on a live connection that neither
// repeats its direction's SYN nor is answered, a RST whose sequence number
// is not its direction's next, a FIN behind the stream (anyone who knows
// or guesses the ports can send them; the kernel's conntrack ignores them
// and the endpoints do too) change nothing: the connection's calls stay
// up, its next messages are walked and rewritten as before, none dropped,
// and its rewrites still wait for their acknowledgement. Each is counted
// and passes unchanged. (A genuine RST or FIN ends the connection:
// teardown_test.go.)
func TestStraySegments(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		seg          func(f *flow) *conntrack.Segment
	}{
		{"SYN from the inside end", conntrack.ReasonStraySYN, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirOut], Dst: f.ends[dirIn], Seq: f.next[dirOut] + 0x10000, SYN: true}
		}},
		{"SYN behind the inside end's stream", conntrack.ReasonStraySYN, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirOut], Dst: f.ends[dirIn], Seq: f.next[dirOut] - 0x10000, SYN: true}
		}},
		{"SYN-ACK from the outside end", conntrack.ReasonStraySYN, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: f.next[dirIn] + 0x10000, Ack: 12345, SYN: true, ACK: true}
		}},
		{"SYN from the outside end", conntrack.ReasonStraySYN, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: 7, SYN: true, Payload: ocrp(5, 5, 1)}
		}},
		{"RST ahead from the outside end", conntrack.ReasonStrayRST, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: f.next[dirIn] + 1000, RST: true}
		}},
		{"RST|ACK far behind from the inside end", conntrack.ReasonStrayRST, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirOut], Dst: f.ends[dirIn], Seq: f.next[dirOut] - 1<<16, Ack: 5, RST: true, ACK: true}
		}},
		{"FIN behind from the outside end", conntrack.ReasonStrayFIN, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: f.next[dirIn] - 0x40000000, Ack: f.next[dirOut], FIN: true, ACK: true}
		}},
		{"FIN behind from the inside end", conntrack.ReasonStrayFIN, func(f *flow) *conntrack.Segment {
			return &conntrack.Segment{Src: f.ends[dirOut], Dst: f.ends[dirIn], Seq: f.next[dirOut] - 20, Ack: f.next[dirIn], FIN: true, ACK: true}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recorder{}
			tbl := conntrack.New(conntrack.Limits{}, obs)
			res := &fakeResolver{}
			f := pnsFlow(t, tbl, res, cli1, 40000, pac1)
			f.start()
			f.pnsCall(7, 99)
			seg := tc.seg(f)
			payload := append([]byte(nil), seg.Payload...)
			r := tbl.Control(seg, f.now, res)
			if r.Drop || r.Modified || string(seg.Payload) != string(payload) {
				t.Errorf("the stray segment: %+v", r)
			}
			if got := tbl.Counters.Strays.Load(); got != 1 || tbl.Counters.Malformed.Load() != 0 {
				t.Errorf("strays counted: %d, want 1 (malformed %d, want 0)", got, tbl.Counters.Malformed.Load())
			}
			if want := tc.reason; len(obs.malformed) != 1 || obs.malformed[0] != want {
				t.Errorf("malformed events %q, want one %q", obs.malformed, want)
			}
			if peers := establishedPeers(tbl); len(peers) != 1 {
				t.Fatalf("after it, established calls' PAC Call IDs %v, want 99", peers)
			}
			f.pnsCall(8, 100) // walked and rewritten both ways
			if f.last.Drop || tbl.Counters.OutOfOrder.Load() != 0 {
				t.Fatalf("the next call's reply: %+v, %d out of order", f.last, tbl.Counters.OutOfOrder.Load())
			}
			if peers := establishedPeers(tbl); len(peers) != 2 {
				t.Fatalf("established calls' PAC Call IDs %v, want 99 and 100", peers)
			}
			if got := tbl.Counters.ConnsOpened.Load(); got != 1 {
				t.Errorf("%d connections opened, want 1", got)
			}
		})
	}
}

// TestRSTBehindEnds: a RST whose sequence number is what the receiver
// acknowledged last, behind its sender's data in flight (a closed
// socket's answer to a segment), ends the connection as one at its next
// byte does.
func TestRSTBehindEnds(t *testing.T) {
	tbl := conntrack.New(conntrack.Limits{}, nil)
	res := &fakeResolver{}
	f := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	f.start()
	f.pnsCall(7, 99)
	acked := f.next[dirIn]
	f.send(dirIn, echoRQ()) // not acknowledged: the client's socket is gone
	tbl.Control(&conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: acked, RST: true}, f.now, res)
	if peers := establishedPeers(tbl); len(peers) != 0 || tbl.Counters.Strays.Load() != 0 {
		t.Fatalf("after the RST: established calls %v, strays %d", peers, tbl.Counters.Strays.Load())
	}
}

// TestAckBeyondStream: an acknowledgement of bytes the inside end never
// sent (a spoofed segment) prunes none of its rewrite records: its
// retransmitted OCRQ is still rewritten as the first copy was.
func TestAckBeyondStream(t *testing.T) {
	tbl := conntrack.New(conntrack.Limits{}, nil)
	res := &fakeResolver{}
	g := pnsFlow(t, tbl, res, cli2, 40000, pac1)
	g.start()
	g.pnsCall(7, 98) // takes outer ID 7 towards pac1: the next call 7 gets another
	f := pnsFlow(t, tbl, res, cli1, 40000, pac1)
	f.start()
	seq := f.next[dirOut]
	first := f.send(dirOut, ocrq(7))
	spoofed := &conntrack.Segment{Src: f.ends[dirIn], Dst: f.ends[dirOut], Seq: f.next[dirIn], Ack: seq + 1<<20, ACK: true}
	tbl.Control(spoofed, f.now, res)
	again := f.resend(dirOut, seq, ocrq(7))
	if u16(first, 12) == 7 || u16(again, 12) != u16(first, 12) {
		t.Errorf("OCRQ Call ID: first copy %d, retransmission %d (inside 7)", u16(first, 12), u16(again, 12))
	}
}
