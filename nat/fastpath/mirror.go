package fastpath

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"github.com/pptpgw/pptpgw/conntrack"
)

// Mirror is what the kernel tiers of one Source hold (bpf, and nf_tables
// behind it): a mapping held by several tiers is kept once, with a bit per
// tier holding it and each tier's counters as last read. The tiers hold
// the same desired state but for the moments between their converges (or
// while one fails), so at 10 000 calls bpf and the nf_tables tier behind
// it cost 18 + 1 bytes a call (the bpf tier reports deltas, and the
// nf_tables tier counts next to nothing: see sparse; 18 more where bpf
// reports cumulative counters, on 32-bit hosts) rather than 2 x 36. Each tier's Reconciler still converges
// on its own goroutine, with its own generation, failures and events;
// they take turns on the Mirror's lock: a converge holds it throughout, a
// counter read only while it credits a key (a dump of nf_tables takes
// 110 ms at 10 000 calls, which the other tier's converge does not wait
// for).
type Mirror struct {
	mu sync.Mutex
	// maps are sorted by InKey, a key's values (one per tier at most)
	// side by side; held and each tier's counts are parallel to it.
	maps []conntrack.GREMap
	held []uint8
	// Each tier's counters as last read: parallel to maps (dense) once
	// the tier has counted something for many of them, before that in
	// sparse, only the mappings whose counters are not zero (both nil:
	// all zero). The nf_tables tier behind bpf carries only the packets
	// bpf hands the stack (too big, fragments, IP options), for a few
	// calls if any: it would pay 18 bytes a call for nothing. A tier
	// whose backend reports deltas (DeltaCounters: the bpf call lines)
	// keeps none.
	counts [maxTiers][]counts
	sparse [maxTiers]map[conntrack.GREMap]counts
	taken  uint8 // the tiers' bits
	// moves grows whenever mappings move in maps (insert, remove): an
	// index into it built before is stale.
	moves uint64
}

// maxTiers is how many Reconcilers one Mirror takes.
const maxTiers = 8

// NewMirror returns a Mirror for the Reconcilers of one Source to share
// (Config.Mirror).
func NewMirror() *Mirror { return &Mirror{} }

var errMirrorFull = errors.New("fastpath: a mirror takes 8 tiers at most")

// join takes a tier's slot (mu held).
func (s *Mirror) join() (int, error) {
	for t := range maxTiers {
		if s.taken&(1<<t) == 0 {
			s.taken |= 1 << t
			return t, nil
		}
	}
	return 0, errMirrorFull
}

// leave gives tier t's slot back, with the mappings only it held (mu
// held).
func (s *Mirror) leave(t int) {
	s.drop(t)
	s.taken &^= 1 << t
}

// drop forgets what tier t holds, and its counters (mu held).
func (s *Mirror) drop(t int) {
	var gone []int
	for i := range s.held {
		if s.held[i] &^= 1 << t; s.held[i] == 0 {
			gone = append(gone, i)
		}
	}
	s.counts[t], s.sparse[t] = nil, nil
	s.remove(gone)
}

// last returns tier t's counters of mapping i as last read (mu held).
func (s *Mirror) last(t, i int) counts {
	if s.counts[t] != nil {
		return s.counts[t][i]
	}
	return s.sparse[t][s.maps[i]]
}

// setLast records a as tier t's counters of mapping i (mu held); zero
// when t stops holding it, so that sparse keeps only what t holds.
func (s *Mirror) setLast(t, i int, a counts) {
	if s.counts[t] != nil {
		s.counts[t][i] = a
		return
	}
	if a == (counts{}) {
		delete(s.sparse[t], s.maps[i])
		return
	}
	if s.sparse[t] == nil {
		s.sparse[t] = make(map[conntrack.GREMap]counts)
	}
	s.sparse[t][s.maps[i]] = a
	// A map's entry takes about 60 bytes, a dense column 18 a mapping.
	if len(s.sparse[t]) > max(len(s.maps)/4, 64) {
		d := make([]counts, len(s.maps), cap(s.maps))
		for i, m := range s.maps {
			d[i] = s.sparse[t][m]
		}
		s.counts[t], s.sparse[t] = d, nil
	}
}

// lower returns the index of the first mapping of k, or where it would go.
func (s *Mirror) lower(k InKey) int {
	hi, lo := inOrder(k)
	i, j := 0, len(s.maps)
	for i < j {
		h := int(uint(i+j) >> 1)
		a := &s.maps[h]
		ahi, alo := inOrder(InKey{Peer: a.Peer, Public: a.Public, OuterID: a.OuterID})
		if ahi < hi || (ahi == hi && alo < lo) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

// find returns the index of k's mapping held by the tiers of mask (any
// of them), or where k would go.
func (s *Mirror) find(k InKey, mask uint8) (int, bool) {
	i := s.lower(k)
	for j := i; j < len(s.maps) && InKeyOf(s.maps[j]) == k; j++ {
		if s.held[j]&mask != 0 {
			return j, true
		}
	}
	return i, false
}

// exact returns the index of m, held by any tier or none.
func (s *Mirror) exact(m conntrack.GREMap) (int, bool) {
	k := InKeyOf(m)
	for j := s.lower(k); j < len(s.maps) && InKeyOf(s.maps[j]) == k; j++ {
		if s.maps[j] == m {
			return j, true
		}
	}
	return 0, false
}

// insert adds the mappings add (sorted by InKey, each key once), held by
// the tiers of mask, with counters zero; at is a buffer.
func (s *Mirror) insert(add []conntrack.GREMap, mask uint8, at []int) []int {
	if len(add) == 0 {
		return at
	}
	at = at[:0]
	for _, m := range add { // where each goes among the old ones
		at = append(at, s.lower(InKeyOf(m)))
	}
	c := cap(s.maps)
	if need := len(s.maps) + len(add); need > c {
		// A sixteenth to spare, not append's quarter. Growing costs a
		// copy of each mapping; a batch's insertion moves as many.
		c = need + need/16 + 16
	}
	s.moves++
	s.maps = insertAt(s.maps, at, c, func(j int) conntrack.GREMap { return add[j] })
	s.held = insertAt(s.held, at, c, func(int) uint8 { return mask })
	for t := range s.counts {
		if s.counts[t] != nil {
			s.counts[t] = insertAt(s.counts[t], at, c, func(int) counts { return counts{} })
		}
	}
	return at
}

// remove takes the mappings at the indexes at (sorted, each once) out.
func (s *Mirror) remove(at []int) {
	if len(at) == 0 {
		return
	}
	s.moves++
	s.maps = removeAt(s.maps, at)
	s.held = removeAt(s.held, at)
	for t := range s.counts {
		if s.counts[t] != nil {
			s.counts[t] = removeAt(s.counts[t], at)
		}
	}
	if len(s.maps) < cap(s.maps)/4 && cap(s.maps) > 1024 { // most calls ended: let the memory go
		s.maps = slices.Clip(slices.Clone(s.maps))
		s.held = slices.Clip(slices.Clone(s.held))
		for t := range s.counts {
			if s.counts[t] != nil {
				s.counts[t] = slices.Clip(slices.Clone(s.counts[t]))
			}
		}
	}
}

// insertAt puts val(j) before the old element at[j] (at ascending),
// growing s to capacity c when it is short, from the back so that no
// element moves twice, each run of the others in one copy.
func insertAt[T any](s []T, at []int, c int, val func(j int) T) []T {
	end := len(s)
	if need := len(s) + len(at); need > cap(s) {
		s = append(make([]T, 0, max(c, need)), s...)
	}
	s = s[:len(s)+len(at)]
	for j := len(at) - 1; j >= 0; j-- {
		i := at[j]
		copy(s[i+j+1:], s[i:end])
		s[i+j] = val(j)
		end = i
	}
	return s
}

// removeAt takes the elements at the indexes at (sorted, each once) out,
// moving each run of the others once: a few changes cost a few copies,
// not a pass over every call.
func removeAt[T any](s []T, at []int) []T {
	w := at[0]
	for j, i := range at {
		end := len(s)
		if j+1 < len(at) {
			end = at[j+1]
		}
		w += copy(s[w:], s[i+1:end])
	}
	clear(s[w:])
	return s[:w]
}

// counts are one tier's counters of one mapping as last read, each way
// (dirIn, dirOut), their low bits: what moved since is taken modulo their
// range (moved). Bytes, 18 of them with no padding: 0-7 the packets'
// bits 0-31, 8-15 the bytes' bits 0-31, 16-17 the bytes' bits 32-38 and
// wide, a counter was beyond its bits.
type counts [18]byte

const (
	dirIn, dirOut = 0, 1
	// pktMask and byteMask are the bits of the counters kept.
	pktMask, byteMask = 1<<32 - 1, 1<<39 - 1
	wide              = 0x80
)

// keep records c as direction d's last read.
func (a *counts) keep(d int, c Counters) {
	binary.LittleEndian.PutUint32(a[4*d:], uint32(c.Packets))
	binary.LittleEndian.PutUint32(a[8+4*d:], uint32(c.Bytes))
	a[16+d] = uint8(c.Bytes>>32) &^ wide
	if c.Packets > pktMask || c.Bytes > byteMask {
		a[16+d] |= wide
	}
}

// moved is what direction d's counters moved from the last read to c.
// Exact while they fit in the bits kept; beyond, a move of half their
// range or more reads as going back (maxCounterGap keeps real moves
// below that). A counter going back is a kernel entry re-created: all of
// c is new.
func (a *counts) moved(d int, c Counters) (pkts, byts uint64) {
	lp := uint64(binary.LittleEndian.Uint32(a[4*d:]))
	lb := uint64(a[16+d]&^wide)<<32 | uint64(binary.LittleEndian.Uint32(a[8+4*d:]))
	pkts, byts = (c.Packets-lp)&pktMask, (c.Bytes-lb)&byteMask
	var back bool
	if c.Packets <= pktMask && c.Bytes <= byteMask {
		// The last read was exact, or a counter beyond its bits came back.
		back = a[16+d]&wide != 0 || c.Packets < lp || c.Bytes < lb
	} else {
		back = pkts > pktMask>>1 || byts > byteMask>>1
	}
	if back {
		return c.Packets, c.Bytes
	}
	return pkts, byts
}
