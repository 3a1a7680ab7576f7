package conntrack

import "encoding/binary"

// index owns every lookup structure of the table and the counts the limits
// read. Calls and connections enter and leave it only through its methods
// (insert, remove, publish, unpublish, setState, bind, addConn, delConn,
// reserve, unreserve), which keep all of them in step; everything else
// reads it. It is guarded by Table.mu like the rest of the table.
type index struct {
	conns map[connKey]*Conn
	// byOuter: translated calls with an inside Call ID, by the peer and
	// the outer ID (the GRE-in lookup). buckets counts the outer IDs
	// taken or reserved per peer and high byte (alloc.go).
	byOuter map[peerIDKey]*Call
	buckets map[bucketKey]uint16
	// Published calls (up, peer Call ID known): byOut by the GRE leaving
	// the inside end (the GRE-out lookup); identIn, identity calls by
	// (inside, peer, inside's Call ID); byPublic, translated calls by
	// (public, peer, peer's Call ID), which ICMP errors quote.
	byOut    outIndex
	identIn  map[outKey]*Call
	byPublic map[outKey]*Call
	perIn    map[Addr]int32 // established and closing calls per inside address (int32: a smaller map slot)
	active   int            // established and closing calls
	pending  int
	unbound  int // picked-up calls whose peer Call ID is not known yet
	// changes counts every change the state file must keep soon: calls
	// and connections coming and going, calls changing state (state.go).
	changes uint64
}

func newIndex() index {
	return index{
		conns:    make(map[connKey]*Conn),
		byOuter:  make(map[peerIDKey]*Call),
		buckets:  make(map[bucketKey]uint16),
		byOut:    make(outIndex),
		identIn:  make(map[outKey]*Call),
		byPublic: make(map[outKey]*Call),
		perIn:    make(map[Addr]int32),
	}
}

// peerIDKey finds a call by the Call ID its peer puts in GRE towards the
// public address: outer IDs are unique per peer across public addresses.
// Packed into a uint64, the map takes its fast path (the GRE lookups are
// the per-packet work).
type peerIDKey uint64

func mkPeerIDKey(peer Addr, id uint16) peerIDKey {
	return peerIDKey(uint64(binary.BigEndian.Uint32(peer[:]))<<16 | uint64(id))
}

// outKey finds a call by GRE leaving the inside end: (inside, peer, peer's Call ID).
type outKey struct {
	inside, peer Addr
	peerID       uint16
}

// bucketKey is a 256-wide block of one peer's outer Call IDs (the high byte).
type bucketKey struct {
	peer Addr
	hi   byte
}

// connKey is a control connection's two endpoints, lower one first, so a
// segment finds its connection whichever way it travels.
type connKey struct{ a, b Endpoint }

func makeConnKey(x, y Endpoint) connKey {
	if less(y, x) {
		x, y = y, x
	}
	return connKey{x, y}
}

func less(x, y Endpoint) bool {
	for i := range x.Addr {
		if x.Addr[i] != y.Addr[i] {
			return x.Addr[i] < y.Addr[i]
		}
	}
	return x.Port < y.Port
}

// Lookups. outer, out and identity are the per-packet ones: one map access
// each, inlined.

func (x *index) conn(a, b Endpoint) *Conn { return x.conns[makeConnKey(a, b)] }

func (x *index) outer(peer Addr, id uint16) *Call { return x.byOuter[mkPeerIDKey(peer, id)] }

func (x *index) out(inside, peer Addr, peerID uint16) *Call { return x.byOut.get(inside, peer, peerID) }

// identity finds an identity call by GRE towards its inside end.
func (x *index) identity(src, peer Addr, id uint16) *Call {
	return x.identIn[outKey{peer, src, id}]
}

func (x *index) quoted(public, peer Addr, peerID uint16) *Call {
	return x.byPublic[outKey{public, peer, peerID}]
}

// room reports whether peer's bucket hi has an outer ID free.
func (x *index) room(peer Addr, hi byte) bool { return x.buckets[bucketKey{peer, hi}] < bucketSize }

// Connections.

func (x *index) addConn(c *Conn) {
	x.conns[c.key] = c
	x.changes++
}

// delConn removes c, which must hold no calls and no reservations.
func (x *index) delConn(c *Conn) {
	if x.conns[c.key] == c {
		delete(x.conns, c.key)
		x.changes++
	}
}

// Buckets: a slot reserved while an allocating Call ID field is split
// across segments (alloc.go), given back or taken by insert.

func (x *index) reserve(peer Addr, hi byte) { x.buckets[bucketKey{peer, hi}]++ }

func (x *index) unreserve(peer Addr, hi byte) {
	k := bucketKey{peer, hi}
	if x.buckets[k]--; x.buckets[k] == 0 {
		delete(x.buckets, k)
	}
}

// Calls.

// free reports whether outer ID id of peer can be taken: not in use, and
// its bucket with room.
func (x *index) free(peer Addr, id uint16) bool {
	return x.outer(peer, id) == nil && x.room(peer, byte(id>>8))
}

// insert adds the new call k to its connection and the indexes its fields
// and state call for: byOuter when it has an inside Call ID and is
// translated (its outer ID must not be in use), the counts of its state.
func (x *index) insert(k *Call) {
	if k.hasInside && !k.identity {
		x.byOuter[mkPeerIDKey(k.Peer, k.OuterID)] = k
		x.reserve(k.Peer, byte(k.OuterID>>8))
		k.inIndex = true
	}
	if k.pickedUp && !k.hasPeer {
		x.unbound++
	}
	x.count(k, +1)
	k.conn.calls = append(k.conn.calls, k)
	x.changes++
}

// remove takes k out of everything; it must be unpublished first. Its
// state stays for the caller to read.
func (x *index) remove(k *Call) {
	c := k.conn
	for i, p := range c.calls {
		if p == k {
			c.calls = append(c.calls[:i], c.calls[i+1:]...)
			break
		}
	}
	if c.cur == k {
		c.cur = nil
	}
	if k.inIndex {
		if key := mkPeerIDKey(k.Peer, k.OuterID); x.byOuter[key] == k {
			delete(x.byOuter, key)
		}
		x.unreserve(k.Peer, byte(k.OuterID>>8))
		k.inIndex = false
	}
	if k.pickedUp && !k.hasPeer {
		x.unbound--
	}
	x.count(k, -1)
	x.changes++
}

// bind gives picked-up call k the peer Call ID id.
func (x *index) bind(k *Call, id uint16) {
	if k.pickedUp && !k.hasPeer {
		x.unbound--
	}
	k.PeerID, k.hasPeer = id, true
	x.changes++
}

// setState moves k to s, keeping the counts the limits read.
func (x *index) setState(k *Call, s CallState) {
	x.count(k, -1)
	k.State = s
	x.count(k, +1)
	x.changes++
}

func (x *index) count(k *Call, d int) {
	switch k.State {
	case StatePending:
		x.pending += d
	case StateEstablished, StateClosing:
		x.active += d
		if x.perIn[k.Inside] += int32(d); x.perIn[k.Inside] <= 0 {
			delete(x.perIn, k.Inside)
		}
	}
}

// publish indexes k's outbound GRE (and, for an identity call, the
// forwarded GRE towards its inside end; for a translated one, the ICMP
// errors quoting it). A call already published under the same out key
// (the same inside host, peer and peer Call ID) is unpublished and
// returned. It returns nil, false when k cannot be published (peer Call
// ID unknown) or already is.
func (x *index) publish(k *Call) (displaced *Call, ok bool) {
	if !k.hasPeer || k.inOutIndex {
		return nil, false
	}
	if old := x.out(k.Inside, k.Peer, k.PeerID); old != nil && old != k {
		x.unpublish(old)
		displaced = old
	}
	x.byOut.add(k)
	k.inOutIndex = true
	if k.identity && k.hasInside {
		// Forwarded GRE towards an untranslated inside end passes too.
		x.identIn[outKey{k.Inside, k.Peer, k.InsideID}] = k
	} else if !k.identity {
		x.byPublic[outKey{k.Public, k.Peer, k.PeerID}] = k
	}
	return displaced, true
}

// unpublish undoes publish; it reports whether k was published.
func (x *index) unpublish(k *Call) bool {
	if !k.inOutIndex {
		return false
	}
	x.byOut.del(k)
	k.inOutIndex = false
	if key := (outKey{k.Inside, k.Peer, k.InsideID}); k.identity && x.identIn[key] == k {
		delete(x.identIn, key)
	}
	if key := (outKey{k.Public, k.Peer, k.PeerID}); x.byPublic[key] == k {
		delete(x.byPublic, key)
	}
	return true
}

// outIndex is byOut, the per-packet index of outKey. 80 bits do not fit
// a fast map key, so the key is the peer, its Call ID and 16 bits hashed
// from the inside address; calls whose keys collide (the same server
// Call ID from two inside hosts whose hashes agree) are chained through
// Call.outNext and told apart by their inside address.
type outIndex map[uint64]*Call

func outIndexKey(inside, peer Addr, peerID uint16) uint64 {
	h := binary.BigEndian.Uint32(inside[:]) * 0x9e3779b1 // Fibonacci hashing: the high bits mix all of them
	return uint64(binary.BigEndian.Uint32(peer[:]))<<32 | uint64(peerID)<<16 | uint64(h>>16)
}

func (x outIndex) get(inside, peer Addr, peerID uint16) *Call {
	for c := x[outIndexKey(inside, peer, peerID)]; c != nil; c = c.outNext {
		if c.Inside == inside && c.Peer == peer && c.PeerID == peerID {
			return c
		}
	}
	return nil
}

// add indexes k, which must not be indexed yet, nor another call with its
// inside address, peer and PeerID (publish removes that one first).
func (x outIndex) add(k *Call) {
	key := outIndexKey(k.Inside, k.Peer, k.PeerID)
	k.outNext = x[key]
	x[key] = k
}

func (x outIndex) del(k *Call) {
	key := outIndexKey(k.Inside, k.Peer, k.PeerID)
	if head := x[key]; head == k {
		if k.outNext == nil {
			delete(x, key)
		} else {
			x[key] = k.outNext
		}
	} else {
		for c := head; c != nil; c = c.outNext {
			if c.outNext == k {
				c.outNext = k.outNext
				break
			}
		}
	}
	k.outNext = nil
}

// calls counts the indexed calls.
func (x outIndex) calls() int {
	n := 0
	for _, c := range x {
		for ; c != nil; c = c.outNext {
			n++
		}
	}
	return n
}
