package conntrack

import "github.com/pptpgw/pptpgw/alg"

// The inverse translations below serve `pptpgw replay`, which must show
// what the peer would have sent to the public address (PeerView) and map
// the gateway's output back to the inside view (InsideView) to prove the
// round trip. The live gateway never calls them.

// maxGone bounds the ended calls a connection remembers for InsideView: a
// message that ends a call (CDN, StopCCRP) is mapped back after the engine
// has already removed it.
const maxGone = 16

func (c *Conn) remember(k *Call) {
	if !k.hasInside {
		return
	}
	if len(c.gone) == maxGone {
		copy(c.gone, c.gone[1:])
		c.gone = c.gone[:maxGone-1]
	}
	c.gone = append(c.gone, k)
}

// known iterates the connection's calls, then the ones it remembers.
func (c *Conn) known(f func(k *Call) bool) *Call {
	for _, k := range c.calls {
		if k.hasInside && f(k) {
			return k
		}
	}
	for i := len(c.gone) - 1; i >= 0; i-- {
		if f(c.gone[i]) {
			return c.gone[i]
		}
	}
	return nil
}

type invMode uint8

const (
	invPeerView   invMode = iota // inbound, inside view -> outside view: peer ID fields inside -> outer
	invInsideView                // outbound, outside view -> inside view: own ID fields outer -> inside
)

type invHandler struct {
	c    *Conn
	mode invMode
}

func (h *invHandler) applies(m *alg.Msg, off int) bool {
	k := fieldKind(m.Type, off)
	return (h.mode == invPeerView && k == alg.PeerCallID) || (h.mode == invInsideView && k == alg.OwnCallID)
}

func (h *invHandler) CallIDHigh(m *alg.Msg, off int, hi byte) byte {
	if !h.applies(m, off) || h.c.Identity {
		return hi
	}
	if h.mode == invPeerView {
		if k := h.c.known(func(k *Call) bool { return byte(k.InsideID>>8) == hi }); k != nil {
			return byte(k.OuterID >> 8)
		}
		return hi
	}
	if k := h.c.known(func(k *Call) bool { return byte(k.OuterID>>8) == hi }); k != nil {
		return byte(k.InsideID >> 8)
	}
	return hi
}

func (h *invHandler) CallIDLow(m *alg.Msg, off int, id uint16, newHi byte) byte {
	if !h.applies(m, off) || h.c.Identity {
		return byte(id)
	}
	if h.mode == invPeerView {
		if k := h.c.known(func(k *Call) bool { return k.InsideID == id && byte(k.OuterID>>8) == newHi }); k != nil {
			return byte(k.OuterID)
		}
		return byte(id)
	}
	if k := h.c.known(func(k *Call) bool { return k.OuterID == id }); k != nil {
		return byte(k.InsideID)
	}
	return byte(id)
}

func (h *invHandler) Result(m *alg.Msg, r byte) byte { return r }
func (h *invHandler) Message(m *alg.Msg)             {}
func (h *invHandler) Framing(r alg.Reason)           {}

// PeerView rewrites an inbound control segment (inside view, as the peer
// sent it with no gateway in between) into what the peer sends when it
// sees the translated traffic: inside Call IDs in peer ID fields become
// outer ones. It returns false when the connection is not tracked.
func (t *Table) PeerView(seg *Segment) (ControlResult, bool) {
	return t.inverse(seg, invPeerView)
}

// InsideView maps an outbound control segment as the gateway sent it back
// to the inside view.
func (t *Table) InsideView(seg *Segment) (ControlResult, bool) {
	return t.inverse(seg, invInsideView)
}

func (t *Table) inverse(seg *Segment, mode invMode) (ControlResult, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.conns[makeConnKey(seg.Src, seg.Dst)]
	if c == nil {
		return ControlResult{}, false
	}
	if c.inv == nil {
		c.inv = new([2]alg.Stream)
	}
	h := invHandler{c: c, mode: mode}
	st := &c.inv[mode]
	if seg.ACK {
		c.inv[1-mode].Ack(seg.Ack)
	}
	sr := st.Segment(seg.Seq, seg.SYN, seg.FIN, seg.Payload, &h)
	return ControlResult{Tracked: true, Modified: sr.Modified, Sum: sr.Sum, Drop: sr.Gap}, true
}

// OuterFor finds the outer Call ID and public address of the call whose
// inside end inside uses Call ID id towards peer (PeerView of GRE).
func (t *Table) OuterFor(inside, peer Addr, id uint16) (public Addr, outer uint16, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, c := range t.conns {
		if c.Inside.Addr != inside || c.Outside.Addr != peer {
			continue
		}
		if k := c.known(func(k *Call) bool { return k.InsideID == id }); k != nil {
			return k.Public, k.OuterID, true
		}
	}
	return Addr{}, 0, false
}

// InsideFor finds the inside address of the call that public and peer
// carry with the peer's Call ID peerID (InsideView of GRE).
func (t *Table) InsideFor(public, peer Addr, peerID uint16) (Addr, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, c := range t.conns {
		if c.Public.Addr != public || c.Outside.Addr != peer {
			continue
		}
		if k := c.known(func(k *Call) bool { return k.hasPeer && k.PeerID == peerID }); k != nil {
			return k.Inside, true
		}
	}
	return Addr{}, false
}
