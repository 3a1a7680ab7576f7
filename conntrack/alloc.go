package conntrack

import "github.com/pptpgw/pptpgw/alg"

const bucketSize = 256

func (t *Table) room(peer Addr, b byte) bool { return t.buckets[bucketKey{peer, b}] < bucketSize }

// chooseBucket picks the outer high byte for an inside ID whose high byte
// is hi (DESIGN.md "The control stream"): the bucket this connection already
// uses for hi, else hi itself, else the next bucket with room. A bucket this
// connection uses for another inside high byte is skipped, so that an outer
// high byte always names one inside high byte and a Peer Call ID split on
// its way back can be restored byte by byte.
func (t *Table) chooseBucket(c *Conn, hi byte) (byte, bool) {
	peer := c.Outside.Addr
	for _, k := range c.calls {
		if k.inIndex && byte(k.InsideID>>8) == hi {
			if y := byte(k.OuterID >> 8); t.room(peer, y) {
				return y, true
			}
			break
		}
	}
	for i := 0; i < 256; i++ {
		b := hi + byte(i)
		if t.room(peer, b) && !c.bucketTaken(b, hi) {
			return b, true
		}
	}
	return 0, false
}

// bucketTaken reports whether c uses outer high byte b for an inside high
// byte other than hi.
func (c *Conn) bucketTaken(b, hi byte) bool {
	for _, k := range c.calls {
		if k.inIndex && byte(k.OuterID>>8) == b && byte(k.InsideID>>8) != hi {
			return true
		}
	}
	return false
}

// chooseLow picks the outer ID in bucket hi: the inside low byte when free,
// else counting up from it, wrapping within the bucket.
func (t *Table) chooseLow(peer Addr, hi, lo byte) (uint16, bool) {
	for i := 0; i < 256; i++ {
		id := uint16(hi)<<8 | uint16(lo+byte(i))
		if t.byOuter[mkPeerIDKey(peer, id)] == nil {
			return id, true
		}
	}
	return 0, false
}

// release gives back direction d's reserved bucket slot.
func (t *Table) release(c *Conn, d int) {
	if c.resv[d] < 0 {
		return
	}
	k := bucketKey{c.Outside.Addr, byte(c.resv[d])}
	if t.buckets[k]--; t.buckets[k] == 0 {
		delete(t.buckets, k)
	}
	c.resv[d] = -1
}

// allocCall records the inside end's own Call ID id of a request or reply
// of type mt with its outer ID. A request becomes a pending call; a reply
// waits in c.cur for its Result Code.
func (t *Table) allocCall(c *Conn, mt alg.MsgType, id, outer uint16, now int64) *Call {
	k := &Call{conn: c, Inside: c.Inside.Addr, InsideID: id, hasInside: true, Public: c.Public.Addr,
		OuterID: outer, Peer: c.Outside.Addr, identity: c.Identity, created: now, since: now}
	k.lastSeen.Store(now)
	switch mt {
	case alg.OCRQ, alg.ICRP:
		k.Role = RolePNSInside
	default:
		k.Role = RolePACInside
	}
	c.Role = k.Role
	if !k.identity {
		t.byOuter[mkPeerIDKey(k.Peer, outer)] = k
		t.buckets[bucketKey{k.Peer, byte(outer >> 8)}]++
		k.inIndex = true
	}
	if mt == alg.OCRP || mt == alg.ICRP {
		if c.cur != nil {
			t.endCall(c.cur, "superseded")
		}
		c.cur = k
	}
	c.calls = append(c.calls, k)
	t.pending++
	return k
}

// requestIn records an OCRQ or ICRQ from the outside end: a pending call
// known by the peer's Call ID until the inside end replies.
func (t *Table) requestIn(c *Conn, mt alg.MsgType, peerID uint16, now int64) {
	if t.pending >= t.limits.MaxCalls {
		// Not recorded: the inside end's reply, finding no request it
		// answers, is refused (replyOut).
		return
	}
	k := &Call{conn: c, Inside: c.Inside.Addr, Public: c.Public.Addr, Peer: c.Outside.Addr,
		PeerID: peerID, hasPeer: true, identity: c.Identity, created: now, since: now}
	k.lastSeen.Store(now)
	k.Role = RolePACInside
	if mt == alg.ICRQ {
		k.Role = RolePNSInside
	}
	c.Role = k.Role
	c.calls = append(c.calls, k)
	t.pending++
}

// replyOut applies the Result Code of a reply from the inside end.
func (t *Table) replyOut(c *Conn, mt alg.MsgType, own, peerID uint16, result byte, now int64) byte {
	k := c.cur
	c.cur = nil
	if k == nil {
		// The reply's own Call ID got no outer ID: no call can exist.
		if result == alg.ResultOK {
			t.Counters.CallsRefused.Add(1)
			return alg.ResultGeneralError
		}
		return result
	}
	answered := false
	for _, p := range c.calls {
		if p != k && !p.hasInside && p.hasPeer && p.PeerID == peerID && p.State == StatePending {
			k.created = p.created
			t.endCall(p, "answered")
			answered = true
			break
		}
	}
	k.PeerID, k.hasPeer = peerID, true
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
func (t *Table) replyIn(c *Conn, mt alg.MsgType, own, outer uint16, result byte, now int64) byte {
	var k *Call
	for _, p := range c.calls {
		if p.hasInside && p.State == StatePending && p.OuterID == outer {
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
	k.PeerID, k.hasPeer = own, true
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
	k.ppp.watch.Store(true) // policy.go: its PPP negotiation is still to come
	t.indexOut(k)           // after watch: fastpath.go reads it
	t.Counters.CallsSetUp.Add(1)
	t.obs.CallUp(k.view())
	return result
}

func (t *Table) overLimit(k *Call) string {
	if t.active >= t.limits.MaxCalls {
		return "max-calls"
	}
	if t.perIn[k.Inside] >= t.limits.MaxCallsPerInside {
		return "max-calls-per-inside"
	}
	return ""
}

// refuse makes k a tombstone: no GRE, its outer ID stays reserved and its
// control messages are still rewritten until it ends.
func (t *Table) refuse(k *Call, reason string, now int64) {
	t.setState(k, StateRefused, now)
	t.unindexOut(k)
	t.Counters.CallsRefused.Add(1)
	t.obs.CallRefused(k.view(), reason)
}

func (t *Table) indexOut(k *Call) {
	if !k.hasPeer || k.inOutIndex {
		return
	}
	if old := t.byOut.get(k.Inside, k.Peer, k.PeerID); old != nil && old != k {
		t.byOut.del(old)
		old.inOutIndex = false
		t.fastDown(old)
	}
	t.byOut.add(k)
	k.inOutIndex = true
	if k.identity && k.hasInside {
		// Forwarded GRE towards an untranslated inside end passes too.
		t.identIn[outKey{k.Inside, k.Peer, k.InsideID}] = k
	} else if !k.identity {
		// ICMP errors quote the translated packet: (public, peer, peer's ID).
		t.byPublic[outKey{k.Public, k.Peer, k.PeerID}] = k
	}
	t.fastUp(k) // fastpath.go
}

func (t *Table) unindexOut(k *Call) {
	if k.inOutIndex {
		t.fastDown(k) // fastpath.go
		t.byOut.del(k)
		k.inOutIndex = false
		if key := (outKey{k.Inside, k.Peer, k.InsideID}); k.identity && t.identIn[key] == k {
			delete(t.identIn, key)
		}
		if key := (outKey{k.Public, k.Peer, k.PeerID}); t.byPublic[key] == k {
			delete(t.byPublic, key)
		}
	}
}

// setState moves k to s, keeping the counts the limits read.
func (t *Table) setState(k *Call, s CallState, now int64) {
	t.count(k, -1)
	k.State, k.since = s, now
	t.count(k, +1)
}

func (t *Table) count(k *Call, d int) {
	switch k.State {
	case StatePending:
		t.pending += d
	case StateEstablished, StateClosing:
		t.active += d
		if t.perIn[k.Inside] += d; t.perIn[k.Inside] <= 0 {
			delete(t.perIn, k.Inside)
		}
	}
}

// endCall removes k and its GRE mapping at once.
func (t *Table) endCall(k *Call, reason string) {
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
	if c.inv != nil {
		c.remember(k)
	}
	if k.inIndex {
		key := mkPeerIDKey(k.Peer, k.OuterID)
		if t.byOuter[key] == k {
			delete(t.byOuter, key)
		}
		b := bucketKey{k.Peer, byte(k.OuterID >> 8)}
		if t.buckets[b]--; t.buckets[b] == 0 {
			delete(t.buckets, b)
		}
		k.inIndex = false
	}
	t.unindexOut(k)
	if k.pickedUp && !k.hasPeer {
		t.unbound--
	}
	up := k.State == StateEstablished || k.State == StateClosing
	t.count(k, -1)
	k.State = StateRefused
	if up {
		t.Counters.CallsEnded.Add(1)
		t.obs.CallDown(k.view(), reason)
	}
}

// pickUp adopts a call named by a peer Call ID field on a connection first
// seen mid-stream: its IDs pass unchanged, so inside ID = outer ID.
func (t *Table) pickUp(c *Conn, id uint16, now int64) {
	if !c.midStream || t.byOuter[mkPeerIDKey(c.Outside.Addr, id)] != nil || !t.room(c.Outside.Addr, byte(id>>8)) {
		return
	}
	k := &Call{conn: c, Inside: c.Inside.Addr, InsideID: id, hasInside: true, Public: c.Public.Addr,
		OuterID: id, Peer: c.Outside.Addr, created: now, since: now, pickedUp: true, State: StatePending}
	k.Role = RolePNSInside
	if c.Inside.Port == 1723 {
		k.Role = RolePACInside
	}
	k.lastSeen.Store(now)
	t.byOuter[mkPeerIDKey(k.Peer, id)] = k
	t.buckets[bucketKey{k.Peer, byte(id >> 8)}]++
	k.inIndex = true
	c.calls = append(c.calls, k)
	t.pending++
	t.setState(k, StateEstablished, now)
	t.unbound++
	if c.hasLastPeer && len(c.calls) == 1 {
		t.bindPeer(c, c.lastPeerID)
	}
	t.Counters.CallsPickedUp.Add(1)
	t.obs.CallUp(k.view())
}

// bindPeer gives the connection's one picked-up call without a peer Call
// ID the ID id, and its GRE mapping from the inside end.
func (t *Table) bindPeer(c *Conn, id uint16) {
	var found *Call
	for _, k := range c.calls {
		if k.pickedUp && !k.hasPeer {
			if found != nil {
				return
			}
			found = k
		}
	}
	if found != nil {
		found.PeerID, found.hasPeer = id, true
		t.unbound--
		t.indexOut(found)
	}
}

// bindPickedUp learns a picked-up call's peer Call ID from the first GRE
// its inside end sends, when exactly one such call could own it.
func (t *Table) bindPickedUp(src, peer Addr, peerID uint16) *Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	var found *Call
	for _, c := range t.conns {
		if c.Inside.Addr != src || c.Outside.Addr != peer {
			continue
		}
		for _, k := range c.calls {
			if k.pickedUp && !k.hasPeer {
				if found != nil {
					return nil
				}
				found = k
			}
		}
	}
	if found != nil {
		found.PeerID, found.hasPeer = peerID, true
		t.unbound--
		t.indexOut(found)
	}
	return found
}

func (c *Conn) findInsideHi(hi byte) *Call {
	for _, k := range c.calls {
		if k.inIndex && byte(k.InsideID>>8) == hi {
			return k
		}
	}
	return nil
}

func (c *Conn) findInside(id uint16, outerHi byte) *Call {
	var any *Call
	for _, k := range c.calls {
		if k.inIndex && k.InsideID == id {
			if byte(k.OuterID>>8) == outerHi {
				return k
			}
			any = k
		}
	}
	return any
}

func (c *Conn) findOuterHi(hi byte) *Call {
	for _, k := range c.calls {
		if k.inIndex && byte(k.OuterID>>8) == hi {
			return k
		}
	}
	return nil
}

func (c *Conn) findOuter(id uint16) *Call {
	k, _ := c.findOuterOK(id)
	return k
}

func (c *Conn) findOuterOK(id uint16) (*Call, bool) {
	for _, k := range c.calls {
		if k.hasInside && k.OuterID == id && (k.inIndex || k.identity) {
			return k, true
		}
	}
	return nil, false
}
