package conntrack

import (
	"math"
	"sync/atomic"

	"github.com/pptpgw/pptpgw/alg"
)

// The call lifecycle: a call is created pending (a request, or a reply
// from the inside end whose ID alloc.go chose), settles as established or
// refused on its reply's Result Code, may be closing, and ends. Every
// change goes through the index (index.go) and the fast path's generation
// (fastpath.go), and the observer hears of it after the lock (events.go).

// Call is one PPTP call through the gateway. 96 bytes, no padding (a
// size class of Go's allocator: a call's bytes are the table's size): its
// yes-or-no facts share a byte, its Role and State another, its PPP view
// a word, and its times after created are 32-bit offsets from it.
// The counters, written per packet, sit between the header and what the
// GRE path reads: not next to the lookup fields of the call after it (96
// bytes end to end): there they doubled GREInParallel's time a packet,
// its workers walking the calls in step. A call's own fields may
// still share a cache line with them, which costs the queue path little
// next to its NFQUEUE round trip, and the kernel paths nothing.
type Call struct {
	conn     *Conn
	connNext *Call // the next of conn's calls (index.go)
	created  int64
	lastSeen atomic.Int64 // written once a seenGrain (table.go)
	pktsIn   atomic.Uint64
	pktsOut  atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	Inside   Addr
	Public   Addr
	Peer     Addr
	InsideID uint16
	OuterID  uint16
	PeerID   uint16
	rs       roleState
	flags    callFlags
	// setUp: 1 + how long after created the reply set it up, in
	// microseconds (0: not seen, as for a call picked up or restored):
	// 4 bytes of a call instead of 8, for a histogram of milliseconds.
	setUp uint32
	since sinceOffset // when State last changed (sinceAt)
	ppp   pppState    // policy.go: what its PPP negotiation showed
}

// callFlags are a call's yes-or-no facts. They are written under the
// table's write lock only (the GRE path reads them under the read lock):
// one byte where seven bools took seven.
type callFlags uint8

const (
	// fHasInside: the inside end's Call ID is known (false: request from
	// outside pending).
	fHasInside callFlags = 1 << iota
	fHasPeer
	fIdentity   // the kernel does not NAT this connection: nothing to rewrite
	fPickedUp   // setup not seen: picked up mid-stream
	fInIndex    // in byOuter and counted in its bucket
	fInOutIndex // published: in byOut
	fCur        // the reply from the inside end being walked (allocCall, replyOut)
)

func (k *Call) hasInside() bool  { return k.flags&fHasInside != 0 }
func (k *Call) hasPeer() bool    { return k.flags&fHasPeer != 0 }
func (k *Call) identity() bool   { return k.flags&fIdentity != 0 }
func (k *Call) pickedUp() bool   { return k.flags&fPickedUp != 0 }
func (k *Call) inIndex() bool    { return k.flags&fInIndex != 0 }
func (k *Call) inOutIndex() bool { return k.flags&fInOutIndex != 0 }
func (k *Call) cur() bool        { return k.flags&fCur != 0 }

// setFlag sets f (on) or clears it (t.mu held for writing).
func (k *Call) setFlag(f callFlags, on bool) {
	if on {
		k.flags |= f
	} else {
		k.flags &^= f
	}
}

// roleState is a call's Role in the low four bits and its CallState in
// the high four (t.mu held for writing to change either).
type roleState uint8

// Role is which end of the call's control connection is behind the gateway.
func (k *Call) Role() Role { return Role(k.rs & 0x0f) }

// State is where the call is in its life.
func (k *Call) State() CallState { return CallState(k.rs >> 4) }

func (k *Call) setRole(r Role) {
	if r > RoleLocalPAC {
		r = RoleUnknown // a state file's: four bits hold the known ones
	}
	k.rs = k.rs&0xf0 | roleState(r)
}

func (k *Call) putState(s CallState) { k.rs = k.rs&0x0f | roleState(s)<<4 }

// sinceOffset is a time after a call's created in 32 bits: microseconds,
// rounded down, below 2^31 of them (35 minutes: where a pending call, a
// setup and a refused setup fall, to the microsecond like setUp); past
// that, the top bit set, whole seconds rounded up, to 68 years (a call
// cleared long after its setup: its tombstone lives up to a second
// longer). A time before created reads as created.
type sinceOffset uint32

const sinceSeconds sinceOffset = 1 << 31

func makeSinceOffset(d int64) sinceOffset {
	switch {
	case d <= 0:
		return 0
	case d < int64(sinceSeconds)*1e3:
		return sinceOffset(d / 1e3)
	}
	s := d / 1e9
	if d%1e9 != 0 {
		s++
	}
	return sinceSeconds | sinceOffset(min(s, int64(sinceSeconds-1)))
}

// ns is the offset in nanoseconds.
func (o sinceOffset) ns() int64 {
	if o&sinceSeconds != 0 {
		return int64(o&^sinceSeconds) * 1e9
	}
	return int64(o) * 1e3
}

// sinceAt is when State last changed (Unix nanoseconds, to the microsecond).
func (k *Call) sinceAt() int64 { return k.created + k.since.ns() }

func (k *Call) setSince(at int64) { k.since = makeSinceOffset(at - k.created) }

// setCreated moves created to at, keeping since.
func (k *Call) setCreated(at int64) {
	since := k.sinceAt()
	k.created = at
	k.setSince(since)
}

// role is the role of a call of c whose inside end is the PNS (pns) or the PAC.
func (c *Conn) role(pns bool) Role {
	switch {
	case c.Local && pns:
		return RoleLocalPNS
	case c.Local:
		return RoleLocalPAC
	case pns:
		return RolePNSInside
	}
	return RolePACInside
}

// newCall is a pending call of connection c at now.
func newCall(c *Conn, now int64) *Call {
	k := &Call{conn: c, Inside: c.Inside.Addr, Public: c.Public.Addr, Peer: c.Outside.Addr, created: now}
	k.setFlag(fIdentity, c.Identity)
	k.lastSeen.Store(now)
	return k
}

// allocCall records the inside end's own Call ID id of a request or reply
// of type mt with its outer ID. A request becomes a pending call; a reply
// waits, marked cur, for its Result Code.
func (t *Table) allocCall(c *Conn, mt alg.MsgType, id, outer uint16, now int64) *Call {
	k := newCall(c, now)
	k.InsideID, k.OuterID = id, outer
	k.setFlag(fHasInside, true)
	k.setRole(c.role(mt == alg.OCRQ || mt == alg.ICRP))
	c.Role = k.Role()
	if mt == alg.OCRP || mt == alg.ICRP {
		if cur := c.walked(); cur != nil {
			t.endCall(cur, "superseded")
		}
	}
	t.idx.insert(k) // outer is not in use: chooseLow found it
	if mt == alg.OCRP || mt == alg.ICRP {
		k.setFlag(fCur, true)
	} else {
		t.emitCall(evRequested, k, "")
	}
	return k
}

// requestIn records an OCRQ or ICRQ from the outside end: a pending call
// known by the peer's Call ID until the inside end replies.
func (t *Table) requestIn(c *Conn, mt alg.MsgType, peerID uint16, now int64) {
	if t.idx.pending >= t.limits.MaxCalls {
		// Not recorded: the inside end's reply, finding no request it
		// answers, is refused (replyOut).
		return
	}
	k := newCall(c, now)
	k.PeerID = peerID
	k.setFlag(fHasPeer, true)
	k.setRole(c.role(mt == alg.ICRQ))
	c.Role = k.Role()
	t.idx.insert(k)
	t.emitCall(evRequested, k, "")
}

// replyOut applies the Result Code of a reply from the inside end.
func (t *Table) replyOut(c *Conn, peerID uint16, result byte, now int64) byte {
	k := c.walked()
	if k != nil {
		k.setFlag(fCur, false)
	}
	if k == nil {
		// The reply's own Call ID got no outer ID: no call can exist.
		if result == alg.ResultOK {
			t.Counters.CallsRefused.Add(1)
			return alg.ResultGeneralError
		}
		return result
	}
	answered := false
	for p := range c.eachCall {
		if p != k && !p.hasInside() && p.hasPeer() && p.PeerID == peerID && p.State() == StatePending {
			k.setCreated(p.created)
			t.endCall(p, "answered")
			answered = true
			break
		}
	}
	k.PeerID = peerID
	k.setFlag(fHasPeer, true)
	if !answered && !c.midStream && result == alg.ResultOK {
		// A request from outside that was not recorded (MaxCalls calls
		// pending) or is gone (setup timeout, Delete): refused like a
		// call over a limit.
		t.refuse(k, "unknown-request", now)
		return alg.ResultGeneralError
	}
	return t.settle(k, result, now)
}

// replyIn applies the Result Code of a reply from the outside end, which
// names the inside end's call by its outer ID at offset 14.
func (t *Table) replyIn(c *Conn, own, outer uint16, result byte, now int64) byte {
	var k *Call
	for p := range c.eachCall {
		if p.hasInside() && p.State() == StatePending && p.OuterID == outer {
			k = p
			break
		}
	}
	if k == nil {
		if c.unalloc > 0 && result == alg.ResultOK {
			c.unalloc--
			t.Counters.CallsRefused.Add(1)
			return alg.ResultGeneralError
		}
		return result
	}
	k.PeerID = own
	k.setFlag(fHasPeer, true)
	return t.settle(k, result, now)
}

// settle turns a pending call into an established one, a refusal (over a
// limit: Result Code rewritten to General Error, ID kept as a tombstone),
// or nothing (the reply said no).
func (t *Table) settle(k *Call, result byte, now int64) byte {
	if result != alg.ResultOK {
		t.Counters.CallsFailed.Add(1)
		t.endCall(k, "setup-failed")
		return result
	}
	if reason := t.overLimit(k); reason != "" {
		t.refuse(k, reason, now)
		return alg.ResultGeneralError
	}
	st := StateEstablished
	if k.conn.closing {
		st = StateClosing // one FIN or StopCCRQ seen already
	}
	t.setState(k, st, now)
	k.setUp = uint32(min(max(now-k.created, 0)/1e3, math.MaxUint32-1) + 1)
	k.ppp.setWatch(true) // policy.go: its PPP negotiation is still to come
	t.publish(k)         // after watch: the fast path reads it
	t.Counters.CallsSetUp.Add(1)
	t.emitCall(evUp, k, "")
	return result
}

func (t *Table) overLimit(k *Call) string {
	if t.idx.active >= t.limits.MaxCalls {
		return "max-calls"
	}
	// The router's own pptpd answers many clients from one address.
	if !k.conn.Local && int(t.idx.perIn[k.Inside]) >= t.limits.MaxCallsPerInside {
		return "max-calls-per-inside"
	}
	return ""
}

// refuse makes k a tombstone: no GRE, its outer ID stays reserved and its
// control messages are still rewritten until it ends.
func (t *Table) refuse(k *Call, reason string, now int64) {
	t.setState(k, StateRefused, now)
	t.unpublish(k)
	t.Counters.CallsRefused.Add(1)
	t.emitCall(evRefused, k, reason)
}

// setState moves k to s at now.
func (t *Table) setState(k *Call, s CallState, now int64) {
	t.touch(k.conn)
	t.idx.setState(k, s)
	k.setSince(now)
}

// publish makes k's outbound GRE mapping live and tells the fast path.
func (t *Table) publish(k *Call) {
	t.touch(k.conn)
	old, ok := t.idx.publish(k)
	if old != nil && old.conn.unconfirmed {
		// A call from before a reboot (state.go): the peer numbers its
		// calls afresh, the new one with the same IDs replaces it.
		t.endCall(old, "replaced")
	}
	if old != nil || ok && fastEligible(k) {
		t.bumpCalls(k, old) // changelog.go
	}
}

// unpublish takes k's outbound GRE mapping back.
func (t *Table) unpublish(k *Call) {
	t.touch(k.conn)
	if t.idx.unpublish(k) && !k.identity() {
		t.bumpCalls(k, nil) // changelog.go
	}
}

// endCall removes k and its GRE mapping at once.
func (t *Table) endCall(k *Call, reason string) {
	t.unpublish(k) // touches k.conn
	t.idx.remove(k)
	t.emitCall(evEnded, k, reason)
	up := k.State() == StateEstablished || k.State() == StateClosing
	k.putState(StateRefused)
	if up {
		t.Counters.CallsEnded.Add(1)
		t.emitCall(evDown, k, reason)
	}
}

// pickUp adopts a call named by a peer Call ID field on a connection first
// seen mid-stream: its IDs pass unchanged, so inside ID = outer ID.
func (t *Table) pickUp(c *Conn, id uint16, now int64) {
	if !c.midStream {
		return
	}
	k := newCall(c, now)
	k.InsideID, k.OuterID = id, id
	k.flags = k.flags&^fIdentity | fHasInside | fPickedUp
	k.setRole(c.role(c.Inside.Port != 1723))
	if !t.idx.free(k.Peer, id) {
		return
	}
	t.idx.insert(k)
	t.setState(k, StateEstablished, now)
	if c.hasLastPeer && c.calls == k && k.connNext == nil {
		t.bindPeer(c, c.lastPeerID)
	}
	t.Counters.CallsPickedUp.Add(1)
	t.emitCall(evUp, k, "")
}

// bindPeer gives the connection's one picked-up call without a peer Call
// ID the ID id, and its GRE mapping from the inside end.
func (t *Table) bindPeer(c *Conn, id uint16) {
	var found *Call
	for k := range c.eachCall {
		if k.pickedUp() && !k.hasPeer() {
			if found != nil {
				return
			}
			found = k
		}
	}
	if found != nil {
		t.idx.bind(found, id)
		t.publish(found)
	}
}

// bindPickedUp learns a picked-up call's peer Call ID from the first GRE
// its inside end sends, when exactly one such call could own it.
func (t *Table) bindPickedUp(src, peer Addr, peerID uint16) *Call {
	t.lock()
	defer t.unlock()
	var found *Call
	for c := range t.idx.conns.all {
		if c.Inside.Addr != src || c.Outside.Addr != peer {
			continue
		}
		for k := range c.eachCall {
			if k.pickedUp() && !k.hasPeer() {
				if found != nil {
					return nil
				}
				found = k
			}
		}
	}
	if found != nil {
		t.idx.bind(found, peerID)
		t.publish(found)
	}
	return found
}

// Finding a connection's calls by the Call ID fields of its messages.

func (c *Conn) findInsideHi(hi byte) *Call { return c.findHi(hi, false) }

// findHi finds a call whose inside Call ID (with outer, its outer Call
// ID) has the high byte hi.
func (c *Conn) findHi(hi byte, outer bool) *Call {
	for k := range c.eachCall {
		id := k.InsideID
		if outer {
			id = k.OuterID
		}
		if k.inIndex() && byte(id>>8) == hi {
			return k
		}
	}
	return nil
}

func (c *Conn) findInside(id uint16, outerHi byte) *Call {
	var any *Call
	for k := range c.eachCall {
		if k.inIndex() && k.InsideID == id {
			if byte(k.OuterID>>8) == outerHi {
				return k
			}
			any = k
		}
	}
	return any
}

func (c *Conn) findOuterHi(hi byte) *Call { return c.findHi(hi, true) }

func (c *Conn) findOuter(id uint16) *Call {
	k, _ := c.findOuterOK(id)
	return k
}

func (c *Conn) findOuterOK(id uint16) (*Call, bool) {
	for k := range c.eachCall {
		if k.hasInside() && k.OuterID == id && (k.inIndex() || k.identity()) {
			return k, true
		}
	}
	return nil, false
}

// setUpAt is when the reply set k up (Unix nanoseconds, to the
// microsecond), 0 when not seen.
func (k *Call) setUpAt() int64 {
	if k.setUp == 0 {
		return 0
	}
	return k.created + int64(k.setUp-1)*1e3
}

// walked returns the call whose reply from the inside end is being walked
// (a flag of the call, not a pointer of every connection: a connection
// holds a call or two).
func (c *Conn) walked() *Call {
	for k := range c.eachCall {
		if k.cur() {
			return k
		}
	}
	return nil
}
