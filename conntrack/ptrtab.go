package conntrack

import "math/rand/v2"

// ptrtab is a hash set of elements *T, each found by the key K it derives
// from itself (keyOf): open addressing with linear probing over a
// power-of-two array of pointers, grown at a load of 3/4 and shrunk at
// 1/8, deletion by backward shift (no tombstones, so a lookup stops at the
// first empty slot). An element costs its slot, 8 B at a load between 3/8
// and 3/4, about 11-21 B; a Go map entry with its key costs 25-40. The
// index's tables hold one element per call or connection.
//
// hash packs a key's bits into 64 (exactly for a key that fits); the
// table mixes them with a seed of its own (chosen at random: a peer
// choosing its Call IDs cannot aim at one slot) and takes the top bits
// (Fibonacci hashing). An element's key must not change while it is in
// the table.
type ptrtab[T any, K comparable] struct {
	slots []*T
	n     int
	shift uint8 // 64 - log2(len(slots))
	// walking: walk is running, so del does not shrink (a rehash would
	// reorder the slots under it).
	walking bool
	seed    uint64
	keyOf   func(*T) K
	hash    func(K) uint64
}

// ptrtabMin is the fewest slots a table keeps.
const ptrtabMin = 8

func newPtrtab[T any, K comparable](keyOf func(*T) K, hash func(K) uint64) ptrtab[T, K] {
	return ptrtab[T, K]{slots: make([]*T, ptrtabMin), shift: 64 - 3, seed: rand.Uint64(), keyOf: keyOf, hash: hash}
}

// home is key k's first slot.
func (t *ptrtab[T, K]) home(k K) int { return t.slot(t.hash(k)) }

// slot is the first slot of a key whose hash is h. The per-packet
// lookups (index.go) probe from it themselves, with the hash and the
// comparison inlined: no call through keyOf and hash.
func (t *ptrtab[T, K]) slot(h uint64) int {
	return int(((h ^ t.seed) * 0x9e3779b97f4a7c15) >> t.shift)
}

func (t *ptrtab[T, K]) len() int { return t.n }

// get returns the element whose key is k, or nil. It reads only.
func (t *ptrtab[T, K]) get(k K) *T {
	mask := len(t.slots) - 1
	for i := t.home(k); ; i = (i + 1) & mask {
		p := t.slots[i]
		if p == nil || t.keyOf(p) == k {
			return p
		}
	}
}

// put adds p, replacing the element with its key; it returns that one.
func (t *ptrtab[T, K]) put(p *T) (old *T) {
	k := t.keyOf(p)
	mask := len(t.slots) - 1
	i := t.home(k)
	for ; t.slots[i] != nil; i = (i + 1) & mask {
		if q := t.slots[i]; t.keyOf(q) == k {
			t.slots[i] = p
			return q
		}
	}
	if 4*(t.n+1) > 3*len(t.slots) {
		t.resize(2 * len(t.slots))
		t.insertNew(p)
	} else {
		t.slots[i] = p
	}
	t.n++
	return nil
}

// del removes p; it reports whether p was there (under its key).
func (t *ptrtab[T, K]) del(p *T) bool {
	mask := len(t.slots) - 1
	i := t.home(t.keyOf(p))
	for ; t.slots[i] != p; i = (i + 1) & mask {
		if t.slots[i] == nil {
			return false
		}
	}
	// Backward shift: each later element of the run that may sit at i
	// (its home is not after i, cyclically) moves there, leaving its own
	// slot to fill in turn; the run ends at an empty slot.
	for j := i; ; {
		j = (j + 1) & mask
		q := t.slots[j]
		if q == nil {
			break
		}
		if h := t.home(t.keyOf(q)); (j-h)&mask >= (j-i)&mask {
			t.slots[i] = q
			i = j
		}
	}
	t.slots[i] = nil
	t.n--
	if !t.walking && len(t.slots) > ptrtabMin && 8*t.n < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
	return true
}

// resize rehashes every element into size slots.
func (t *ptrtab[T, K]) resize(size int) {
	old := t.slots
	t.slots = make([]*T, size)
	t.shift = 64
	for s := size; s > 1; s >>= 1 {
		t.shift--
	}
	for _, p := range old {
		if p != nil {
			t.insertNew(p)
		}
	}
}

// insertNew puts p, whose key no element has, at its first empty slot.
func (t *ptrtab[T, K]) insertNew(p *T) {
	mask := len(t.slots) - 1
	i := t.home(t.keyOf(p))
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = p
}

// all yields every element, in no particular order; yield must not change
// the table (use walk).
func (t *ptrtab[T, K]) all(yield func(*T) bool) {
	for _, p := range t.slots {
		if p != nil && !yield(p) {
			return
		}
	}
}

// walk is all for a caller that may delete the element it was given, and
// no other: it still yields every other element once. It starts after an
// empty slot, which no run crosses, so a backward shift only moves
// elements not yielded yet into the slot just yielded, which is read
// again.
func (t *ptrtab[T, K]) walk(yield func(*T) bool) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	start := 0
	for t.slots[start] != nil {
		start++
	}
	t.walking = true
	defer func() {
		t.walking = false
		for len(t.slots) > ptrtabMin && 8*t.n < len(t.slots) {
			t.resize(len(t.slots) / 2)
		}
	}()
	for i := (start + 1) & mask; i != start; {
		p := t.slots[i]
		if p != nil && !yield(p) {
			return
		}
		if p == nil || t.slots[i] == p {
			i = (i + 1) & mask
		}
	}
}
