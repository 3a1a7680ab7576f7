package conntrack

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// stateBufMatches checks AppendJSON against encoding/json for b.
func stateBufMatches(t testing.TB, b *StateBuf) {
	t.Helper()
	want, err := json.Marshal(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
	}
}

// randString is one of the strings a record may hold, and some it should
// not (escapes, HTML characters, invalid UTF-8).
func randString(r *rand.Rand) string {
	all := []string{"", "a", "node-1", "mschapv2", "128-bit stateless", "<&>", "\"\\", "\x00\x1f\x7f", "é\u2028\u2029", "\xff\xfe"}
	return all[r.IntN(len(all))]
}

// Random records, every field over its range, encode as encoding/json
// encodes them.
func TestStateBufJSONRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addr := func() Addr { return Addr{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())} }
	ep := func() Endpoint { return Endpoint{addr(), uint16(r.Uint32())} }
	i64 := func() int64 { return []int64{0, 1, -1, r.Int64(), -r.Int64()}[r.IntN(5)] }
	u64 := func() uint64 { return []uint64{0, 1, r.Uint64(), ^uint64(0)}[r.IntN(4)] }
	flag := func() bool { return r.IntN(2) == 0 }
	var b StateBuf
	for range 3000 {
		b.conns, b.calls = b.conns[:0], b.calls[:0]
		for range r.IntN(4) {
			c := connRec{inside: ep(), outside: ep(), public: ep(), identity: flag(), local: flag(), midStream: flag(),
				closing: flag(), role: Role(r.IntN(256)), unalloc: int32(r.Uint32()), cur: int32(r.IntN(4) - 1),
				calls: int32(r.IntN(4)), resv: [2]int16{int16(r.Uint32()), int16(r.Uint32())}, ended: i64(), lastSeen: i64(),
				origin: randString(r)}
			for range c.calls {
				b.calls = append(b.calls, callRec{inside: addr(), public: addr(), peer: addr(), insideID: uint16(r.Uint32()),
					outerID: uint16(r.Uint32()), peerID: uint16(r.Uint32()), role: Role(r.IntN(256)), state: CallState(r.IntN(256)),
					hasInside: flag(), hasPeer: flag(), identity: flag(), pickedUp: flag(), negotiat: flag(),
					created: i64(), since: i64(), lastSeen: i64(), pktsIn: u64(), pktsOut: u64(), bytesIn: u64(), bytesOut: u64(),
					auth: randString(r), mppe: randString(r)})
			}
			b.conns = append(b.conns, c)
		}
		stateBufMatches(t, &b)
	}
}

// FuzzStateBufJSON: any strings in a record (a node's name, the PPP
// fields) encode as encoding/json encodes them.
func FuzzStateBufJSON(f *testing.F) {
	f.Add("node", "mschapv2", "128-bit stateless", int64(1))
	f.Add("<\u2028\xff>", "\x00", "", int64(-1))
	f.Fuzz(func(t *testing.T, origin, auth, mppe string, n int64) {
		b := StateBuf{conns: []connRec{{origin: origin, calls: 1, ended: n, lastSeen: n}},
			calls: []callRec{{auth: auth, mppe: mppe, created: n, since: -n}}}
		stateBufMatches(t, &b)
	})
}
