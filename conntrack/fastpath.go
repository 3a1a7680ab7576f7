package conntrack

// The kernel GRE fast path (--gre-path kernel, nat/nft): the table tells a
// FastPath which calls' GRE translation the kernel may do, and takes back
// the packet counts the kernel kept for them.

// GREMap is one call's GRE translation, both ways: inbound GRE from Peer
// carrying OuterID gets destination Inside and Call ID InsideID; outbound
// GRE from Inside to Peer carrying PeerID gets source Public.
type GREMap struct {
	Peer     Addr
	OuterID  uint16
	Public   Addr
	Inside   Addr
	InsideID uint16
	PeerID   uint16
}

// FastPath hears when a call's GRE may be translated outside the table and
// when that must stop. Its methods are called with the table locked, in
// the order of the changes: they must not block or call back into the
// table. MapDel may name a mapping MapAdd never gave.
type FastPath interface {
	MapAdd(m GREMap)
	MapDel(m GREMap)
}

func (k *Call) greMap() GREMap {
	return GREMap{Peer: k.Peer, OuterID: k.OuterID, Public: k.Public, Inside: k.Inside, InsideID: k.InsideID, PeerID: k.PeerID}
}

// fastEligible: a call up with both directions known and something to
// rewrite.
func fastEligible(k *Call) bool {
	return !k.identity && k.inIndex && k.inOutIndex && k.hasInside && k.hasPeer &&
		(k.State == StateEstablished || k.State == StateClosing)
}

// needsPeek reports whether the policy in force reads the calls' PPP
// negotiation: then a call reaches the fast path only once that is over,
// since the kernel shows the gateway none of its packets.
func (t *Table) needsPeek() bool {
	p := t.policy.Load()
	return p != nil && (len(p.Auth) > 0 || p.MinMPPE > 0)
}

// fastUp offers k to the fast path (t.mu held).
func (t *Table) fastUp(k *Call) {
	if t.fast == nil || !fastEligible(k) {
		return
	}
	if k.ppp.watch.Load() && t.needsPeek() {
		t.fastWait[k] = struct{}{}
		return
	}
	delete(t.fastWait, k)
	t.fast.MapAdd(k.greMap())
}

// fastDown takes k's mapping back from the fast path (t.mu held).
func (t *Table) fastDown(k *Call) {
	if t.fast == nil {
		return
	}
	delete(t.fastWait, k)
	t.fast.MapDel(k.greMap())
}

// SetFastPath attaches f (nil detaches) and gives it every call that is
// eligible now; called again, it replays them (a resync after an error).
func (t *Table) SetFastPath(f FastPath) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fast = f
	t.fastWait = make(map[*Call]struct{})
	if f == nil {
		return
	}
	for _, c := range t.conns {
		for _, k := range c.calls {
			t.fastUp(k)
		}
	}
}

// PromoteFastPath gives the fast path the calls that were waiting for the
// end of their PPP negotiation (a policy in force reads it) and are done.
func (t *Table) PromoteFastPath() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.fastWait {
		if !fastEligible(k) {
			delete(t.fastWait, k)
			continue
		}
		if !k.ppp.watch.Load() || !t.needsPeek() {
			t.fastUp(k)
		}
	}
}

// KernelGRE adds packets and bytes the fast path translated for the call
// of m to its counters (in: towards the inside end); with packets, the
// call was seen at now. A call no longer in the table is ignored.
func (t *Table) KernelGRE(m GREMap, in bool, packets, bytes uint64, now int64) {
	if packets == 0 {
		return
	}
	t.mu.RLock()
	var k *Call
	if in {
		k = t.byOuter[mkPeerIDKey(m.Peer, m.OuterID)]
	} else {
		k = t.byOut.get(m.Inside, m.Peer, m.PeerID)
	}
	t.mu.RUnlock()
	if k == nil {
		return
	}
	k.lastSeen.Store(now)
	if in {
		k.pktsIn.Add(packets)
		k.bytesIn.Add(bytes)
	} else {
		k.pktsOut.Add(packets)
		k.bytesOut.Add(bytes)
	}
}
