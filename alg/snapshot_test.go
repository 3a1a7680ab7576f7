package alg

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func statesEqual(a, b StreamState) bool {
	norm := func(s StreamState) StreamState {
		if len(s.MsgBytes) == 0 {
			s.MsgBytes = nil
		}
		if len(s.Wrote) == 0 {
			s.Wrote = nil
		}
		if len(s.Records) == 0 {
			s.Records = nil
		}
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// roundTrip saves st as the state file does and reads it back.
func roundTrip(t testing.TB, st StreamState) StreamState {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var got StreamState
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// Saving and restoring the tracker anywhere, even between the two bytes of
// a Call ID or inside garbage, then walking on, gives the output and the
// handler calls of an uninterrupted walk.
func TestStateRoundTrip(t *testing.T) {
	streams := []struct {
		name string
		ps   []part
	}{
		{"valid", testStream},
		{"garbage", []part{junk([]byte{1, 2, 3, 4, 5}), {goldenOCRQ, true}, junk(setU16(goldenCCRQ, 6, 0)), {goldenOCRP, true}}},
	}
	for _, ss := range streams {
		for _, isn := range []uint32{11, 0xffffffff - (ocrqAt + 13)} {
			t.Run(fmt.Sprintf("%s/%d", ss.name, isn), func(t *testing.T) {
				in, out, calls := reference(t, isn, ss.ps)
				for cut := 0; cut <= len(in); cut++ {
					name := fmt.Sprintf("saved at %d", cut)
					c := newConn(t, isn, false)
					got := c.walk(in[:cut])
					st := c.s.State()
					var s2 Stream
					s2.SetState(roundTrip(t, st))
					if st2 := s2.State(); !statesEqual(st, st2) {
						t.Fatalf("%s: State after SetState (-want +got):\n-%+v\n+%+v", name, st, st2)
					}
					if s2.Synced() != c.s.Synced() || s2.Next() != c.s.Next() || s2.FinSeen() != c.s.FinSeen() {
						t.Errorf("%s: restored Synced %v Next %d FinSeen %v, want %v %d %v", name,
							s2.Synced(), s2.Next(), s2.FinSeen(), c.s.Synced(), c.s.Next(), c.s.FinSeen())
					}
					c.s = s2
					rest, _ := c.send(in, cut, len(in), false)
					got = append(got, rest...)
					diffBytes(t, name, out, got)
					diffCalls(t, name, calls, c.h.calls)
					// Retransmissions after the restore still get their rewrite.
					again, _ := c.send(in, 0, len(in), false)
					diffBytes(t, name+", retransmitted", out, again)
					c.checkHandler()
					if t.Failed() {
						return
					}
				}
			})
		}
	}
}

func TestStateZero(t *testing.T) {
	var s Stream
	if st := s.State(); !statesEqual(st, StreamState{}) {
		t.Errorf("zero Stream: %+v", st)
	}
	s.SetState(StreamState{})
	if s.Synced() || s.Next() != 0 || s.FinSeen() {
		t.Errorf("after SetState(zero): Synced %v Next %d FinSeen %v", s.Synced(), s.Next(), s.FinSeen())
	}
}

// damagedStates are positions a corrupt or hand-edited state file could
// hold. The tracker must not panic on them, and must find its way back to
// the messages that follow.
func damagedStates() map[string]StreamState {
	const next = 5000
	hdr := goldenOCRQ[:HeaderLen]
	pre := goldenOCRQ[:prefixLen]
	w := make([]byte, prefixLen)
	return map[string]StreamState{
		"msg_bytes_too_long":     {Started: true, InSync: true, Next: next, MsgStart: next - 21, MsgBytes: make([]byte, 21), Wrote: make([]byte, 21)},
		"wrote_short":            {Started: true, InSync: true, Next: next, MsgStart: next - 14, MsgBytes: goldenOCRQ[:14], Wrote: w[:3]},
		"bad_header_in_sync":     {Started: true, InSync: true, Next: next, MsgStart: next - 14, MsgBytes: make([]byte, 14), Wrote: w[:14]},
		"msg_start_far_behind":   {Started: true, InSync: true, Next: next, MsgStart: next - 1000, MsgBytes: pre, Wrote: w},
		"msg_start_just_behind":  {Started: true, InSync: true, Next: next, MsgStart: next - 168, MsgBytes: pre, Wrote: w},
		"short_prefix_far":       {Started: true, InSync: true, Next: next, MsgStart: next - 100, MsgBytes: hdr[:5], Wrote: w[:5]},
		"short_prefix_in_fields": {Started: true, InSync: true, Next: next, MsgStart: next - 14, MsgBytes: hdr[:5], Wrote: w[:5]},
		"header_pos_too_far":     {Started: true, InSync: true, Next: next, MsgStart: next - 15, MsgBytes: hdr, Wrote: w[:12]},
		"msg_start_ahead":        {Started: true, InSync: true, Next: next, MsgStart: next + 10, MsgBytes: hdr[:3], Wrote: w[:3]},
		"msg_start_way_ahead":    {Started: true, InSync: true, Next: next, MsgStart: next + 1<<31, MsgBytes: pre, Wrote: w},
		"not_started_in_sync":    {Started: false, InSync: true, Next: next, MsgStart: next - 14, MsgBytes: pre[:14], Wrote: w[:14]},
		"out_of_sync_long_carry": {Started: true, InSync: false, Next: next, MsgStart: next - 20, MsgBytes: pre, Wrote: w},
		"out_of_sync_bad_carry":  {Started: true, InSync: false, Next: next, MsgStart: next - 400, MsgBytes: hdr[:7], Wrote: w[:7]},
		"records_garbage": {Started: true, InSync: true, Next: next, MsgStart: next,
			Records: [][3]int64{{-1, 300, -5}, {1 << 40, 0, 0}, {next - 3, 0x34, 0x35}, {next + 100, 1, 2}, {0, 0, 0}}},
		"too_many_records": {Started: true, InSync: true, Next: next, MsgStart: next, Records: make([][3]int64, 3*maxRecords)},
		"fin_mid_message":  {Started: true, InSync: true, FinSeen: true, Next: next, MsgStart: next - 13, MsgBytes: pre[:12], Wrote: w[:12]},
	}
}

func TestStateDamaged(t *testing.T) {
	in, out, _ := expect(testStream)
	last := len(in) - len(goldenStopCCRQ) - len(goldenCDN) - len(goldenCCRQ)
	for name, st := range damagedStates() {
		t.Run(name, func(t *testing.T) {
			for cut := 0; cut <= len(in); cut += 7 {
				var s Stream
				var h testHandler
				s.SetState(st)
				got := s.State()
				if len(got.Records) > maxRecords {
					t.Errorf("%d records restored, bound is %d", len(got.Records), maxRecords)
				}
				// Whatever the position, the stream that follows is walked
				// without a panic, and its later messages are found.
				p1, p2 := clone(in[:cut]), clone(in[cut:])
				s.Segment(5000, false, false, p1, &h)
				s.Segment(5000+uint32(cut), false, false, p2, &h)
				p := concat(p1, p2)
				if !st.FinSeen {
					diffBytes(t, fmt.Sprintf("cut at %d: CCRQ, CDN", cut), out[last:], p[last:])
				}
				// Old and far segments too.
				s.Segment(4000, false, false, clone(in), &h)
				s.Segment(1<<31, false, true, clone(in), &h)
				s.Ack(5000 + uint32(len(in)))
			}
		})
	}
}

// posJSONEqual checks that AppendJSON writes what encoding/json writes
// for the position's StreamState, byte for byte.
func posJSONEqual(t testing.TB, p StreamPos, recs []Rewrite) {
	t.Helper()
	want, err := json.Marshal(p.State(recs))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.AppendJSON([]byte("x"), recs); string(got[1:]) != string(want) {
		t.Fatalf("AppendJSON\n got %s\nwant %s", got[1:], want)
	}
}

// The state writer's encoding of a position is encoding/json's, anywhere
// in a stream (mid-header, mid-Call ID, with rewrite records, in garbage).
func TestStreamPosJSON(t *testing.T) {
	for _, ps := range [][]part{testStream, {junk([]byte{1, 2, 3, 4, 5}), {goldenOCRQ, true}, junk(setU16(goldenCCRQ, 6, 0))}} {
		for _, isn := range []uint32{0, 11, 0xffffffff - (ocrqAt + 13)} {
			in, _, _ := reference(t, isn, ps)
			for cut := 0; cut <= len(in); cut++ {
				c := newConn(t, isn, false)
				c.walk(in[:cut])
				p, recs := c.s.Pos([]Rewrite{{1, 2, 3}})
				if p.Records() != len(recs)-1 {
					t.Fatalf("Records %d, %d appended", p.Records(), len(recs)-1)
				}
				posJSONEqual(t, p, recs[1:])
			}
		}
	}
	posJSONEqual(t, StreamPos{}, nil)
}

// FuzzStreamPosJSON: any position, as the fields allow, encodes as
// encoding/json encodes it.
func FuzzStreamPosJSON(f *testing.F) {
	f.Add(byte(0xff), uint8(20), uint32(1), uint32(2), uint32(3), []byte("0123456789abcdefghij"), []byte("ABCDEFGHIJKLMNOP"), []byte{1, 2, 3, 4, 5, 6})
	f.Add(byte(0), uint8(0), uint32(0), uint32(0), uint32(0), []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, flags byte, n uint8, isn, next, start uint32, pre, wrote, recBytes []byte) {
		p := StreamPos{started: flags&1 != 0, hasISN: flags&2 != 0, inSync: flags&4 != 0, finSeen: flags&8 != 0,
			n: n % (prefixLen + 1), isn: isn, next: next, msgStart: start}
		copy(p.pre[:], pre)
		copy(p.wrote[:], wrote)
		var recs []Rewrite
		for i := 0; i+6 <= len(recBytes); i += 6 {
			recs = append(recs, Rewrite{uint32(recBytes[i])<<24 | uint32(recBytes[i+1])<<16 | uint32(recBytes[i+2])<<8 | uint32(recBytes[i+3]), recBytes[i+4], recBytes[i+5]})
		}
		p.recs = int32(len(recs))
		posJSONEqual(t, p, recs)
	})
}
