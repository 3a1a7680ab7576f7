package conntrack

import (
	"encoding/json"
	"errors"
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

// chunks records EncodeTo's writes; it fails the write fail.
type chunks struct {
	all  []byte
	n    int
	fail int
}

func (c *chunks) Write(p []byte) (int, error) {
	c.n++
	if c.n == c.fail {
		return 0, errors.New("disk full")
	}
	c.all = append(c.all, p...)
	return len(p), nil
}

// EncodeTo writes AppendJSON's bytes in chunks of some 64 KiB, reusing its
// buffer, and stops at the first failed write.
func TestStateBufEncodeTo(t *testing.T) {
	var b StateBuf
	for i := range 2000 {
		b.conns = append(b.conns, connRec{inside: Endpoint{Addr{10, 0, byte(i >> 8), byte(i)}, 40000}, calls: 1, cur: -1})
		b.calls = append(b.calls, callRec{inside: Addr{10, 0, byte(i >> 8), byte(i)}, created: int64(i) << 40})
	}
	want := b.AppendJSON(nil)
	for range 2 {
		var c chunks
		if err := b.EncodeTo(&c); err != nil {
			t.Fatal(err)
		}
		if string(c.all) != string(want) {
			t.Fatal("EncodeTo differs from AppendJSON")
		}
		if least := len(want) / (encodeChunk + 1024); c.n <= least || c.n > len(want)/encodeChunk+1 {
			t.Errorf("%d writes of %d bytes", c.n, len(want))
		}
	}
	if cap(b.scratch) > 2*encodeChunk {
		t.Errorf("buffer of %d bytes kept", cap(b.scratch))
	}
	c := chunks{fail: 2}
	if err := b.EncodeTo(&c); err == nil || c.n != 2 {
		t.Errorf("failed write: %v after %d writes", err, c.n)
	}
}
