package conntrack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pptpgw/pptpgw/alg"
)

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

// seenGrain is how fresh a call's last-seen time is kept by its GRE: a
// store per packet would be a locked instruction per packet for nothing
// (the idle timeouts count in minutes).
const seenGrain = int64(time.Millisecond)

// seen records GRE of the call at now.
func (c *Call) seen(now int64) {
	if now-c.lastSeen.Load() >= seenGrain {
		c.lastSeen.Store(now)
	}
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
// inside address, peer and PeerID (indexOut removes that one first).
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

// Call is one PPTP call through the gateway.
type Call struct {
	conn       *Conn
	Role       Role
	State      CallState
	Inside     Addr
	InsideID   uint16
	hasInside  bool // the inside end's Call ID is known (false: request from outside pending)
	Public     Addr
	OuterID    uint16
	Peer       Addr
	PeerID     uint16
	hasPeer    bool
	identity   bool  // the kernel does not NAT this connection: nothing to rewrite
	pickedUp   bool  // setup not seen: picked up mid-stream
	inIndex    bool  // in byOuter and counted in its bucket
	inOutIndex bool  // in byOut
	outNext    *Call // byOut's chain
	created    int64
	since      int64 // when State last changed
	lastSeen   atomic.Int64
	pktsIn     atomic.Uint64
	pktsOut    atomic.Uint64
	bytesIn    atomic.Uint64
	bytesOut   atomic.Uint64
	ppp        pppState // policy.go: what its PPP negotiation showed
}

// Conn is one control connection: its two stream trackers and its calls.
type Conn struct {
	key      connKey
	Inside   Endpoint
	Outside  Endpoint
	Public   Endpoint
	Identity bool
	Role     Role
	out, in  alg.Stream // out: from the inside end
	calls    []*Call
	// pending allocation per direction (0 out, 1 in): the outer high byte
	// reserved when a segment ended after a Call ID's high byte, and the
	// allocation of the reply being walked.
	resv      [2]int16 // -1: none
	cur       *Call    // the inside end's reply being walked
	hOut, hIn handler
	inv       *[2]alg.Stream // replay's inverse trackers (inverse.go)
	gone      []*Call
	midStream bool // first seen without its SYN: calls may be picked up
	// lastPeerID: the outside end's Call ID last seen travelling out on a
	// mid-stream connection, for the call picked up next.
	lastPeerID  uint16
	hasLastPeer bool
	unalloc     int   // requests that got no outer ID: their replies are refused
	ended       int64 // when the connection ended (0: alive)
	lastSeen    int64
	closing     bool
}

// Info describes the connection for logs.
func (c *Conn) Info() ConnInfo {
	return ConnInfo{Inside: c.Inside, Outside: c.Outside, Public: c.Public, Role: c.Role}
}

// Table is the gateway's call table.
type Table struct {
	mu       sync.RWMutex
	limits   Limits
	obs      Observer
	conns    map[connKey]*Conn
	byOuter  map[peerIDKey]*Call
	byOut    outIndex
	identIn  map[outKey]*Call // identity calls by (inside, peer, inside's Call ID)
	byPublic map[outKey]*Call // translated calls by (public, peer, peer's Call ID)
	buckets  map[bucketKey]uint16
	perIn    map[Addr]int // established and closing calls per inside address
	active   int          // established and closing calls
	pending  int
	unbound  int // picked-up calls whose peer Call ID is not known yet
	Counters Counters
	// policy.go: the policy in force and its counters.
	policy         atomic.Pointer[Policy]
	policyCleared  atomic.Uint64
	controlDeniedN atomic.Uint64
	// fastpath.go: the kernel fast path, and calls waiting for the end of
	// their PPP negotiation before they reach it.
	fast     FastPath
	fastWait map[*Call]struct{}
}

// New returns an empty table.
func New(l Limits, obs Observer) *Table {
	if obs == nil {
		obs = NopObserver{}
	}
	return &Table{
		limits:   l.withDefaults(),
		obs:      obs,
		conns:    make(map[connKey]*Conn),
		byOuter:  make(map[peerIDKey]*Call),
		byOut:    make(outIndex),
		identIn:  make(map[outKey]*Call),
		byPublic: make(map[outKey]*Call),
		buckets:  make(map[bucketKey]uint16),
		perIn:    make(map[Addr]int),
	}
}

// SetLimits changes limits and timeouts (SIGHUP); existing calls stay.
func (t *Table) SetLimits(l Limits) {
	t.mu.Lock()
	t.limits = l.withDefaults()
	t.mu.Unlock()
}

// Limits returns the limits in force.
func (t *Table) Limits() Limits {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.limits
}

// GREVerdict is what the table says about a GRE packet.
type GREVerdict uint8

const (
	GREUnknown  GREVerdict = iota // no call: drop
	GREForward                    // a call: rewrite as returned
	GRERefused                    // a tombstone: drop
	GREIdentity                   // a call the kernel does not NAT: pass untouched
)

// GREIn looks up GRE from peer to dst (a public address) carrying Call ID
// outer. On GREForward it returns the inside address and Call ID to write.
func (t *Table) GREIn(peer, dst Addr, outer uint16, n int, now int64) (Addr, uint16, GREVerdict) {
	inside, id, v, _ := t.greIn(peer, dst, outer, n, now)
	return inside, id, v
}

// greIn is GREIn that also returns the call found (GREForward).
func (t *Table) greIn(peer, dst Addr, outer uint16, n int, now int64) (Addr, uint16, GREVerdict, *Call) {
	t.mu.RLock()
	c := t.byOuter[mkPeerIDKey(peer, outer)]
	if c == nil || c.Public != dst {
		t.mu.RUnlock()
		return Addr{}, 0, GREUnknown, nil
	}
	inside, id, st := c.Inside, c.InsideID, c.State
	t.mu.RUnlock()
	if st == StateRefused || st == StatePending || !c.hasInside {
		return Addr{}, 0, GRERefused, nil
	}
	c.seen(now)
	c.pktsIn.Add(1)
	c.bytesIn.Add(uint64(n))
	return inside, id, GREForward, c
}

// GREOut looks up forwarded GRE from src to peer carrying the peer's Call
// ID. On GREForward it returns the public address to write as source.
// Forwarded GRE of an untranslated call passes either way (GREIdentity).
func (t *Table) GREOut(src, peer Addr, peerID uint16, n int, now int64) (Addr, GREVerdict) {
	public, v, _ := t.greOut(src, peer, peerID, n, now)
	return public, v
}

// greOut is GREOut that also returns the call found (GREForward, GREIdentity).
func (t *Table) greOut(src, peer Addr, peerID uint16, n int, now int64) (Addr, GREVerdict, *Call) {
	t.mu.RLock()
	c := t.byOut.get(src, peer, peerID)
	unbound := t.unbound
	if c == nil {
		if k := t.identIn[outKey{peer, src, peerID}]; k != nil {
			t.mu.RUnlock()
			k.seen(now)
			k.pktsIn.Add(1)
			k.bytesIn.Add(uint64(n))
			return Addr{}, GREIdentity, k
		}
		t.mu.RUnlock()
		if unbound == 0 {
			return Addr{}, GREUnknown, nil
		}
		if c = t.bindPickedUp(src, peer, peerID); c == nil {
			return Addr{}, GREUnknown, nil
		}
		t.mu.RLock()
	}
	public, st, ident := c.Public, c.State, c.identity
	t.mu.RUnlock()
	if st == StateRefused || st == StatePending {
		return Addr{}, GRERefused, nil
	}
	c.seen(now)
	c.pktsOut.Add(1)
	c.bytesOut.Add(uint64(n))
	if ident {
		return public, GREIdentity, c
	}
	return public, GREForward, c
}

// Counters are the table's event counts since start.
type Counters struct {
	ControlMessages atomic.Uint64
	Rewrites        atomic.Uint64
	Malformed       atomic.Uint64
	CallsSetUp      atomic.Uint64
	CallsPickedUp   atomic.Uint64
	CallsEnded      atomic.Uint64
	CallsRefused    atomic.Uint64
	CallsFailed     atomic.Uint64 // replies with a result other than 1
	IDsExhausted    atomic.Uint64
	OutOfOrder      atomic.Uint64
	Retransmissions atomic.Uint64
	ConnsOpened     atomic.Uint64
	ConnsClosed     atomic.Uint64
}

// Stats returns the counters and gauges as a flat map (DESIGN.md stats).
func (t *Table) Stats() map[string]uint64 {
	t.mu.RLock()
	active, pending, conns := t.active, t.pending, len(t.conns)
	t.mu.RUnlock()
	k := &t.Counters
	m := map[string]uint64{
		"control_messages":     k.ControlMessages.Load(),
		"rewrites":             k.Rewrites.Load(),
		"malformed":            k.Malformed.Load(),
		"calls_set_up":         k.CallsSetUp.Load(),
		"calls_picked_up":      k.CallsPickedUp.Load(),
		"calls_ended":          k.CallsEnded.Load(),
		"calls_refused":        k.CallsRefused.Load(),
		"calls_failed":         k.CallsFailed.Load(),
		"call_ids_exhausted":   k.IDsExhausted.Load(),
		"control_out_of_order": k.OutOfOrder.Load(),
		"control_retransmits":  k.Retransmissions.Load(),
		"control_conns_opened": k.ConnsOpened.Load(),
		"control_conns_closed": k.ConnsClosed.Load(),
		"calls_active":         uint64(active),
		"calls_pending":        uint64(pending),
		"control_conns_active": uint64(conns),
	}
	t.addPolicyStats(m)
	return m
}

func nanos(t time.Time) int64 { return t.UnixNano() }
