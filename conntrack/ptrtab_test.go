package conntrack

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// check verifies the table's invariants: its count, its load, and every
// element found from its home without an empty slot in between, its key
// held by no other element.
func (t *ptrtab[T, K]) check() error {
	size := len(t.slots)
	if size < ptrtabMin || size&(size-1) != 0 || 1<<(64-t.shift) != size {
		return fmt.Errorf("ptrtab: %d slots, shift %d", size, t.shift)
	}
	n := 0
	seen := make(map[K]bool)
	for i, p := range t.slots {
		if p == nil {
			continue
		}
		n++
		k := t.keyOf(p)
		if seen[k] {
			return fmt.Errorf("ptrtab: key %v held twice", k)
		}
		seen[k] = true
		for j := t.home(k); j != i; j = (j + 1) & (size - 1) {
			if t.slots[j] == nil {
				return fmt.Errorf("ptrtab: key %v at %d, an empty slot %d after its home", k, i, j)
			}
		}
	}
	switch {
	case n != t.n:
		return fmt.Errorf("ptrtab: %d elements, counted %d", n, t.n)
	case 4*n > 3*size:
		return fmt.Errorf("ptrtab: %d elements in %d slots", n, size)
	}
	return nil
}

type tabElem struct{ k, v uint32 }

func newElemTab(hash func(uint32) uint64) ptrtab[tabElem, uint32] {
	return newPtrtab(func(e *tabElem) uint32 { return e.k }, hash)
}

// The hashes the tests run the table with: a good one, one folding keys
// onto few values (long runs, wrapping the array's end), a constant.
var tabHashes = map[string]func(uint32) uint64{
	"mixed":    func(k uint32) uint64 { return uint64(k) },
	"16 homes": func(k uint32) uint64 { return uint64(k % 16) },
	"constant": func(uint32) uint64 { return 7 },
}

func TestPtrtabOps(t *testing.T) {
	for name, hash := range tabHashes {
		t.Run(name, func(t *testing.T) {
			tab := newElemTab(hash)
			a, b, a2 := &tabElem{1, 10}, &tabElem{2, 20}, &tabElem{1, 11}
			steps := []struct {
				do   func() any
				want any
			}{
				{func() any { return tab.get(1) }, (*tabElem)(nil)},
				{func() any { return tab.put(a) }, (*tabElem)(nil)},
				{func() any { return tab.put(b) }, (*tabElem)(nil)},
				{func() any { return tab.get(1) }, a},
				{func() any { return tab.put(a2) }, a}, // replaces a, returned
				{func() any { return tab.get(1) }, a2},
				{func() any { return tab.del(a) }, false}, // not there any more
				{func() any { return tab.len() }, 2},
				{func() any { return tab.del(a2) }, true},
				{func() any { return tab.del(a2) }, false},
				{func() any { return tab.get(1) }, (*tabElem)(nil)},
				{func() any { return tab.get(2) }, b},
				{func() any { return tab.len() }, 1},
			}
			for i, s := range steps {
				if got := s.do(); got != s.want {
					t.Fatalf("step %d: got %v, want %v", i, got, s.want)
				}
				if err := tab.check(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		})
	}
}

// TestPtrtabModel runs random puts, deletions, lookups and walks against
// a Go map, through growth to thousands of elements and shrinking back.
func TestPtrtabModel(t *testing.T) {
	for name, hash := range tabHashes {
		t.Run(name, func(t *testing.T) {
			n := 3000
			if name == "constant" {
				n = 300 // every lookup walks the whole run
			}
			for seed := range uint64(4) {
				r := rand.New(rand.NewPCG(seed, 1))
				runModel(t, newElemTab(hash), n, func() int { return r.IntN(1000) }, r.Uint32N)
			}
		})
	}
}

// runModel fills tab to about n elements with keys below 2n, empties it
// again, and checks it against a map after every step (op picks among
// 1000 per-mille, key draws keys).
func runModel(t *testing.T, tab ptrtab[tabElem, uint32], n int, op func() int, key func(uint32) uint32) {
	t.Helper()
	model := make(map[uint32]*tabElem)
	maxSlots := 0
	for phase := range 2 {
		pput := 700 // per mille
		if phase == 1 {
			pput = 250
		}
		for step := 0; phase == 0 && len(model) < n || phase == 1 && len(model) > 0; step++ {
			k := key(uint32(2 * n))
			o := op()
			if phase == 1 && o >= pput {
				for mk := range model { // emptying: delete what is there
					k = mk
					break
				}
			}
			switch {
			case o < pput:
				e := &tabElem{k, uint32(step)}
				if got, want := tab.put(e), model[k]; got != want {
					t.Fatalf("put %d: replaced %v, want %v", k, got, want)
				}
				model[k] = e
			case o < 990:
				e := model[k]
				if e == nil {
					e = &tabElem{k: k}
				}
				if got, want := tab.del(e), model[k] != nil; got != want {
					t.Fatalf("del %d: %v, want %v", k, got, want)
				}
				delete(model, k)
			default: // deleting half of it while emptying
				walkDeleting(t, &tab, model, func(uint32) uint32 { return uint32(1-phase) | key(2) })
			}
			if got := tab.get(k); got != model[k] {
				t.Fatalf("get %d: %v, want %v", k, got, model[k])
			}
			if step%97 == 0 || len(model) < 20 {
				if err := tab.check(); err != nil {
					t.Fatal(err)
				}
				for mk, e := range model {
					if tab.get(mk) != e {
						t.Fatalf("get %d: %v, want %v", mk, tab.get(mk), e)
					}
				}
			}
			maxSlots = max(maxSlots, len(tab.slots))
		}
	}
	if tab.len() != 0 || len(tab.slots) != ptrtabMin || 4*n > 3*maxSlots {
		t.Errorf("after the run: %d elements in %d slots (at most %d slots for %d)", tab.len(), len(tab.slots), maxSlots, n)
	}
}

// walkDeleting walks tab deleting what it yields when coin(2) is 0, and
// checks that it yielded every element once.
func walkDeleting(t *testing.T, tab *ptrtab[tabElem, uint32], model map[uint32]*tabElem, coin func(uint32) uint32) {
	t.Helper()
	seen := make(map[*tabElem]bool)
	for e := range tab.walk {
		if seen[e] || model[e.k] != e {
			t.Fatalf("walk yielded %v again or unknown", e)
		}
		seen[e] = true
		if coin(2) == 0 {
			if !tab.del(e) {
				t.Fatalf("walk: del %v failed", e)
			}
			delete(model, e.k)
			seen[e] = true
		}
	}
	for _, e := range model {
		if !seen[e] {
			t.Fatalf("walk missed %v", e)
		}
	}
	if err := tab.check(); err != nil {
		t.Fatal(err)
	}
}

// TestPtrtabWalkAll: walk deleting every element (as Expire removing
// every connection) yields each once and leaves the table empty and
// shrunk; all yields each once.
func TestPtrtabWalkAll(t *testing.T) {
	for name, hash := range tabHashes {
		t.Run(name, func(t *testing.T) {
			tab := newElemTab(hash)
			for k := range uint32(200) {
				tab.put(&tabElem{k: k * 7})
			}
			n := 0
			for range tab.all {
				n++
			}
			seen := make(map[uint32]bool)
			for e := range tab.walk {
				if seen[e.k] {
					t.Fatalf("walk yielded %d twice", e.k)
				}
				seen[e.k] = true
				tab.del(e)
			}
			if n != 200 || len(seen) != 200 || tab.len() != 0 || len(tab.slots) != ptrtabMin {
				t.Errorf("all yielded %d, walk %d; left %d in %d slots", n, len(seen), tab.len(), len(tab.slots))
			}
		})
	}
}

// FuzzPtrtab drives the table with operations read from the input, a
// byte pair each (what, key), against a map.
func FuzzPtrtab(f *testing.F) {
	f.Add([]byte{0, 1, 0, 17, 0, 33, 200, 1, 255, 4, 0, 2})
	f.Add([]byte("put and delete in runs that wrap around the end"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		tab := newElemTab(tabHashes["16 homes"])
		model := make(map[uint32]*tabElem)
		for i := 0; i+1 < len(ops); i += 2 {
			k := uint32(ops[i+1])
			switch {
			case ops[i] < 160:
				e := &tabElem{k, uint32(i)}
				if got, want := tab.put(e), model[k]; got != want {
					t.Fatalf("put %d: replaced %v, want %v", k, got, want)
				}
				model[k] = e
			case ops[i] < 250:
				if e := model[k]; e != nil && !tab.del(e) {
					t.Fatalf("del %d failed", k)
				}
				delete(model, k)
			default:
				walkDeleting(t, &tab, model, func(uint32) uint32 { return k & 1 })
			}
			if err := tab.check(); err != nil {
				t.Fatal(err)
			}
			for mk, e := range model {
				if tab.get(mk) != e {
					t.Fatalf("get %d: %v, want %v", mk, tab.get(mk), e)
				}
			}
		}
	})
}

// TestIndexKeysExact: calls whose keys agree in all but one field are
// told apart, by the table under a hash that folds every key together,
// and by the GRE-out lookup (its own probe) under the real one.
func TestIndexKeysExact(t *testing.T) {
	peer, other := Addr{198, 51, 100, 2}, Addr{198, 51, 100, 3}
	calls := []*Call{
		{Inside: Addr{10, 0, 0, 1}, Peer: peer, PeerID: 1},
		{Inside: Addr{10, 0, 0, 2}, Peer: peer, PeerID: 1},
		{Inside: Addr{10, 0, 0, 1}, Peer: peer, PeerID: 2},
		{Inside: Addr{10, 0, 0, 1}, Peer: other, PeerID: 1},
	}
	for _, folded := range []bool{true, false} {
		x := newIndex()
		lookup := x.out
		if folded {
			x.byOut.hash = func(outKey) uint64 { return 1 }
			lookup = func(inside, peer Addr, id uint16) *Call { return x.byOut.get(outKey{inside, peer, id}) }
		}
		for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}} {
			for _, k := range calls {
				x.byOut.put(k)
			}
			left := map[*Call]bool{}
			for _, k := range calls {
				left[k] = true
			}
			for _, i := range order {
				x.byOut.del(calls[i])
				delete(left, calls[i])
				for _, k := range calls {
					if got := lookup(k.Inside, k.Peer, k.PeerID); (got == k) != left[k] || !left[k] && got != nil {
						t.Fatalf("folded %v, order %v, after deleting %d: out(%v) = %p, want present %v", folded, order, i, k.Inside, got, left[k])
					}
				}
			}
			if err := x.byOut.check(); err != nil || x.byOut.len() != 0 {
				t.Fatalf("order %v: %v, %d left", order, err, x.byOut.len())
			}
		}
	}
}
