package conntrack

import "encoding/binary"

// index owns every lookup structure of the table and the counts the limits
// read. Calls and connections enter and leave it only through its methods
// (insert, remove, publish, unpublish, setState, bind, addConn, delConn,
// reserve, unreserve), which keep all of them in step; everything else
// reads it. It is guarded by Table.mu like the rest of the table.
type index struct {
	// conns: by their two endpoints (connKey, lower first), which the
	// connection derives from its own (keyOf).
	conns ptrtab[Conn, connKey]
	// segKeys: the key of a connection whose segments do not carry its
	// Inside and Outside endpoints (hairpin NAT: the peer's address as
	// the inside end sees it is the one SNAT gave it); normally empty.
	segKeys map[*Conn]connKey
	// byOuter: translated calls with an inside Call ID, by the peer and
	// the outer ID (the GRE-in lookup). buckets counts the outer IDs
	// taken or reserved per peer and high byte (alloc.go).
	byOuter ptrtab[Call, peerIDKey]
	buckets map[bucketKey]uint16
	// Published calls (up, peer Call ID known): byOut by the GRE leaving
	// the inside end (the GRE-out lookup); identIn, identity calls by
	// (inside, peer, inside's Call ID); byPublic, translated calls by
	// (public, peer, peer's Call ID), which ICMP errors quote.
	byOut    ptrtab[Call, outKey]
	identIn  ptrtab[Call, outKey]
	byPublic ptrtab[Call, outKey]
	perIn    map[Addr]int32 // established and closing calls per inside address (int32: a smaller map slot)
	active   int            // established and closing calls
	pending  int
	unbound  int // picked-up calls whose peer Call ID is not known yet
	// changes counts every change the state file must keep soon: calls
	// and connections coming and going, calls changing state (state.go).
	changes uint64
}

func newIndex() index {
	segKeys := make(map[*Conn]connKey)
	return index{
		conns: newPtrtab(func(c *Conn) connKey {
			if len(segKeys) != 0 {
				if k, ok := segKeys[c]; ok {
					return k
				}
			}
			return makeConnKey(c.Inside, c.Outside)
		}, connKey.hash),
		segKeys:  segKeys,
		byOuter:  newPtrtab(func(k *Call) peerIDKey { return mkPeerIDKey(k.Peer, k.OuterID) }, peerIDKey.hash),
		buckets:  make(map[bucketKey]uint16),
		byOut:    newPtrtab(func(k *Call) outKey { return outKey{k.Inside, k.Peer, k.PeerID} }, outKey.hash),
		identIn:  newPtrtab(func(k *Call) outKey { return outKey{k.Inside, k.Peer, k.InsideID} }, outKey.hash),
		byPublic: newPtrtab(func(k *Call) outKey { return outKey{k.Public, k.Peer, k.PeerID} }, outKey.hash),
		perIn:    make(map[Addr]int32),
	}
}

// peerIDKey finds a call by the Call ID its peer puts in GRE towards the
// public address: outer IDs are unique per peer across public addresses.
// Packed into 48 bits of a uint64, it is its own hash.
type peerIDKey uint64

func (k peerIDKey) hash() uint64 { return uint64(k) }

func mkPeerIDKey(peer Addr, id uint16) peerIDKey {
	return peerIDKey(uint64(binary.BigEndian.Uint32(peer[:]))<<16 | uint64(id))
}

// outKey finds a call by GRE leaving the inside end: (inside, peer, peer's Call ID).
type outKey struct {
	inside, peer Addr
	peerID       uint16
}

func (k outKey) hash() uint64 { return outHash(k.inside, k.peer, k.peerID) }

// outHash folds an outKey's 80 bits into 64: the addresses multiplied (the
// table's own multiply mixes again), the Call ID put in. The lookups call
// it on their arguments, not on an outKey built on the stack, whose
// unaligned 10 bytes cost a stalled load.
func outHash(inside, peer Addr, id uint16) uint64 {
	a := uint64(binary.LittleEndian.Uint32(inside[:]))<<32 | uint64(binary.LittleEndian.Uint32(peer[:]))
	return a*0xbf58476d1ce4e5b9 ^ uint64(id)
}

// bucketKey is a 256-wide block of one peer's outer Call IDs (the high byte).
type bucketKey struct {
	peer Addr
	hi   byte
}

// connKey is a control connection's two endpoints, lower one first, so a
// segment finds its connection whichever way it travels.
type connKey struct{ a, b Endpoint }

func (k connKey) hash() uint64 { return k.a.bits()*0xbf58476d1ce4e5b9 ^ k.b.bits() }

// bits packs e into 48 bits, in less's order.
func (e Endpoint) bits() uint64 {
	return uint64(binary.BigEndian.Uint32(e.Addr[:]))<<16 | uint64(e.Port)
}

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

// Lookups. outer, out and identity are the per-packet ones: a probe of
// their table, reading only, with the key's hash and comparison inlined
// (each compares the fields its table's keyOf takes).

// conn finds the connection whose segments carry endpoints a and b.
func (x *index) conn(a, b Endpoint) *Conn {
	if len(x.segKeys) != 0 {
		return x.conns.get(makeConnKey(a, b))
	}
	ea, eb := a.bits(), b.bits()
	if eb < ea {
		ea, eb = eb, ea
	}
	t := &x.conns
	mask := len(t.slots) - 1
	for i := t.slot(ea*0xbf58476d1ce4e5b9 ^ eb); ; i = (i + 1) & mask { // connKey.hash
		c := t.slots[i]
		if c == nil {
			return nil
		}
		if in, out := c.Inside.bits(), c.Outside.bits(); in == ea && out == eb || in == eb && out == ea {
			return c
		}
	}
}

// connKeyOf is the key c is found by.
func (x *index) connKeyOf(c *Conn) connKey { return x.conns.keyOf(c) }

func (x *index) outer(peer Addr, id uint16) *Call {
	t := &x.byOuter
	mask := len(t.slots) - 1
	for i := t.slot(mkPeerIDKey(peer, id).hash()); ; i = (i + 1) & mask {
		if c := t.slots[i]; c == nil || c.OuterID == id && c.Peer == peer {
			return c
		}
	}
}

func (x *index) out(inside, peer Addr, peerID uint16) *Call {
	t := &x.byOut
	mask := len(t.slots) - 1
	for i := t.slot(outHash(inside, peer, peerID)); ; i = (i + 1) & mask {
		if c := t.slots[i]; c == nil || c.PeerID == peerID && c.Inside == inside && c.Peer == peer {
			return c
		}
	}
}

// identity finds an identity call by GRE towards its inside end.
func (x *index) identity(src, peer Addr, id uint16) *Call {
	t := &x.identIn
	mask := len(t.slots) - 1
	for i := t.slot(outHash(peer, src, id)); ; i = (i + 1) & mask {
		if c := t.slots[i]; c == nil || c.InsideID == id && c.Inside == peer && c.Peer == src {
			return c
		}
	}
}

func (x *index) quoted(public, peer Addr, peerID uint16) *Call {
	t := &x.byPublic
	mask := len(t.slots) - 1
	for i := t.slot(outHash(public, peer, peerID)); ; i = (i + 1) & mask {
		if c := t.slots[i]; c == nil || c.PeerID == peerID && c.Public == public && c.Peer == peer {
			return c
		}
	}
}

// room reports whether peer's bucket hi has an outer ID free.
func (x *index) room(peer Addr, hi byte) bool { return x.buckets[bucketKey{peer, hi}] < bucketSize }

// Connections.

// connAt finds the connection whose Inside and Outside are in and out,
// a hairpin one too (indexed by its segments' endpoints: a walk of the few
// in segKeys). State files and a pair's records name connections so.
func (x *index) connAt(in, out Endpoint) *Conn {
	key := makeConnKey(in, out)
	if c := x.conns.get(key); c != nil && makeConnKey(c.Inside, c.Outside) == key {
		return c
	}
	for c := range x.segKeys {
		if makeConnKey(c.Inside, c.Outside) == key {
			return c
		}
	}
	return nil
}

// segKey is the endpoints c's segments carry when they are not its Inside
// and Outside (hairpin NAT).
func (x *index) segKey(c *Conn) (connKey, bool) {
	if len(x.segKeys) == 0 {
		return connKey{}, false
	}
	k, ok := x.segKeys[c]
	return k, ok
}

// addConn adds c, whose segments carry the endpoints key.
func (x *index) addConn(c *Conn, key connKey) {
	if key != makeConnKey(c.Inside, c.Outside) {
		x.segKeys[c] = key
	}
	x.conns.put(c)
	x.changes++
}

// delConn removes c, which must hold no calls and no reservations.
func (x *index) delConn(c *Conn) {
	if x.conns.del(c) {
		x.changes++
	}
	delete(x.segKeys, c)
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
	if k.hasInside() && !k.identity() {
		x.byOuter.put(k)
		x.reserve(k.Peer, byte(k.OuterID>>8))
		k.setFlag(fInIndex, true)
	}
	if k.pickedUp() && !k.hasPeer() {
		x.unbound++
	}
	x.count(k, +1)
	k.conn.appendCall(k)
	x.changes++
}

// remove takes k out of everything; it must be unpublished first. Its
// state stays for the caller to read.
func (x *index) remove(k *Call) {
	c := k.conn
	c.removeCall(k)
	if k.inIndex() {
		x.byOuter.del(k)
		x.unreserve(k.Peer, byte(k.OuterID>>8))
		k.setFlag(fInIndex, false)
	}
	if k.pickedUp() && !k.hasPeer() {
		x.unbound--
	}
	x.count(k, -1)
	x.changes++
}

// bind gives picked-up call k the peer Call ID id.
func (x *index) bind(k *Call, id uint16) {
	if k.pickedUp() && !k.hasPeer() {
		x.unbound--
	}
	k.PeerID = id
	k.setFlag(fHasPeer, true)
	x.changes++
}

// setState moves k to s, keeping the counts the limits read.
func (x *index) setState(k *Call, s CallState) {
	x.count(k, -1)
	k.putState(s)
	x.count(k, +1)
	x.changes++
}

func (x *index) count(k *Call, d int) {
	switch k.State() {
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
	if !k.hasPeer() || k.inOutIndex() {
		return nil, false
	}
	if old := x.out(k.Inside, k.Peer, k.PeerID); old != nil && old != k {
		x.unpublish(old)
		displaced = old
	}
	x.byOut.put(k)
	k.setFlag(fInOutIndex, true)
	if k.identity() && k.hasInside() {
		// Forwarded GRE towards an untranslated inside end passes too.
		x.identIn.put(k)
	} else if !k.identity() {
		x.byPublic.put(k)
	}
	return displaced, true
}

// unpublish undoes publish; it reports whether k was published.
func (x *index) unpublish(k *Call) bool {
	if !k.inOutIndex() {
		return false
	}
	x.byOut.del(k)
	k.setFlag(fInOutIndex, false)
	if k.identity() {
		x.identIn.del(k)
	}
	x.byPublic.del(k)
	return true
}

// A connection's calls are a list through Call.connNext, oldest first
// (Conn.calls its head): a pointer per call and one per connection where a
// slice took a header and an array. Few calls share a connection, so
// appending and removing walk it.

// appendCall adds k after c's last call.
func (c *Conn) appendCall(k *Call) {
	k.connNext = nil
	p := &c.calls
	for *p != nil {
		p = &(*p).connNext
	}
	*p = k
}

// removeCall takes k out of c's calls.
func (c *Conn) removeCall(k *Call) {
	for p := &c.calls; *p != nil; p = &(*p).connNext {
		if *p == k {
			*p = k.connNext
			k.connNext = nil
			return
		}
	}
}

// eachCall yields c's calls oldest first; yield may remove the call it
// is given.
func (c *Conn) eachCall(yield func(*Call) bool) {
	for k := c.calls; k != nil; {
		next := k.connNext
		if !yield(k) {
			return
		}
		k = next
	}
}

// eachCallBack yields c's calls newest first; yield may remove the call
// it is given, and no other.
func (c *Conn) eachCallBack(yield func(*Call) bool) {
	var buf [8]*Call // a connection rarely holds more
	s := buf[:0]
	for k := c.calls; k != nil; k = k.connNext {
		s = append(s, k)
	}
	for i := len(s) - 1; i >= 0; i-- {
		if !yield(s[i]) {
			return
		}
	}
}

// numCalls counts c's calls.
func (c *Conn) numCalls() int {
	n := 0
	for k := c.calls; k != nil; k = k.connNext {
		n++
	}
	return n
}
