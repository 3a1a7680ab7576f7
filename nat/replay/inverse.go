package replay

import (
	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

// The inverse translations below show what the peer would have sent to
// the public address (peerView) and map the gateway's output back to the
// inside view (insideView) to prove the round trip. They read the call
// table's plain data (ConnCalls, Conns) and keep their own stream trackers
// per control connection; the live gateway has none of this.

// maxGone bounds the ended calls a connection remembers for insideView: a
// message that ends a call (CDN, StopCCRP) is mapped back after the engine
// has already removed it.
const maxGone = 16

// invConn is one control connection's inverse state.
type invConn struct {
	serial  uint64 // the table's connection it belongs to
	streams [2]alg.Stream
	calls   []conntrack.CallInfo // the table's calls, read for the segment
	gone    []conntrack.CallInfo // ended calls, oldest first
}

type invMode uint8

const (
	invPeerView   invMode = iota // inbound, inside view -> outside view: peer ID fields inside -> outer
	invInsideView                // outbound, outside view -> inside view: own ID fields outer -> inside
)

// inverse holds the inverse state of every connection seen.
type inverse struct {
	table *conntrack.Table
	conns map[[2]conntrack.Endpoint]*invConn // by inside and outside end
}

func newInverse(t *conntrack.Table) *inverse {
	return &inverse{table: t, conns: map[[2]conntrack.Endpoint]*invConn{}}
}

func connKeyOf(ci conntrack.ConnInfo) [2]conntrack.Endpoint {
	return [2]conntrack.Endpoint{ci.Inside, ci.Outside}
}

// remember keeps a call that left the table (conntrack.EndObserver).
func (v *inverse) remember(k conntrack.CallInfo) {
	c := v.conns[connKeyOf(k.Conn)]
	if c == nil || c.serial != k.Conn.Serial || !k.HasInside {
		return
	}
	if len(c.gone) == maxGone {
		copy(c.gone, c.gone[1:])
		c.gone = c.gone[:maxGone-1]
	}
	c.gone = append(c.gone, k)
}

// known finds a call of c, the table's first, then the ones it remembers.
func (c *invConn) known(f func(k *conntrack.CallInfo) bool) *conntrack.CallInfo {
	for i := range c.calls {
		if k := &c.calls[i]; k.HasInside && f(k) {
			return k
		}
	}
	for i := len(c.gone) - 1; i >= 0; i-- {
		if f(&c.gone[i]) {
			return &c.gone[i]
		}
	}
	return nil
}

// peerView rewrites an inbound control segment (inside view, as the peer
// sent it with no gateway in between) into what the peer sends when it
// sees the translated traffic: inside Call IDs in peer ID fields become
// outer ones. It returns false when the connection is not tracked.
func (v *inverse) peerView(seg *conntrack.Segment) (alg.SegResult, bool) {
	return v.view(seg, invPeerView)
}

// insideView maps an outbound control segment as the gateway sent it back
// to the inside view.
func (v *inverse) insideView(seg *conntrack.Segment) (alg.SegResult, bool) {
	return v.view(seg, invInsideView)
}

func (v *inverse) view(seg *conntrack.Segment, mode invMode) (alg.SegResult, bool) {
	info, calls, ok := v.table.ConnCalls(seg.Src, seg.Dst)
	if !ok {
		return alg.SegResult{}, false
	}
	key := connKeyOf(info)
	c := v.conns[key]
	if c == nil || c.serial != info.Serial {
		// First seen, or a new connection on the same ports.
		c = &invConn{serial: info.Serial}
		v.conns[key] = c
	}
	c.calls = calls
	h := invHandler{c: c, mode: mode, identity: info.Identity}
	if seg.ACK {
		c.streams[1-mode].Ack(seg.Ack)
	}
	return c.streams[mode].Segment(seg.Seq, seg.SYN, seg.FIN, seg.Payload, &h), true
}

// outerFor finds the outer Call ID and public address of the call whose
// inside end inside uses Call ID id towards peer (peerView of GRE).
func (v *inverse) outerFor(inside, peer conntrack.Addr, id uint16) (public conntrack.Addr, outer uint16, ok bool) {
	k := v.find(func(ci conntrack.ConnInfo) bool { return ci.Inside.Addr == inside && ci.Outside.Addr == peer },
		func(k *conntrack.CallInfo) bool { return k.InsideID == id })
	if k == nil {
		return conntrack.Addr{}, 0, false
	}
	return k.Public, k.OuterID, true
}

// insideFor finds the inside address of the call that public and peer
// carry with the peer's Call ID peerID (insideView of GRE).
func (v *inverse) insideFor(public, peer conntrack.Addr, peerID uint16) (conntrack.Addr, bool) {
	k := v.find(func(ci conntrack.ConnInfo) bool { return ci.Public.Addr == public && ci.Outside.Addr == peer },
		func(k *conntrack.CallInfo) bool { return k.HasPeer && k.PeerID == peerID })
	if k == nil {
		return conntrack.Addr{}, false
	}
	return k.Inside, true
}

// find looks through the calls, live and remembered, of the connections
// conn accepts for one f accepts.
func (v *inverse) find(conn func(conntrack.ConnInfo) bool, f func(*conntrack.CallInfo) bool) *conntrack.CallInfo {
	for _, ci := range v.table.Conns() {
		if !conn(ci) {
			continue
		}
		_, calls, ok := v.table.ConnCalls(ci.Inside, ci.Outside)
		if !ok {
			continue
		}
		c := &invConn{calls: calls}
		if ic := v.conns[connKeyOf(ci)]; ic != nil && ic.serial == ci.Serial {
			c.gone = ic.gone
		}
		if k := c.known(f); k != nil {
			return k
		}
	}
	return nil
}

type invHandler struct {
	c        *invConn
	mode     invMode
	identity bool
}

func (h *invHandler) applies(m *alg.Msg, off int) bool {
	at12, at14 := alg.Fields(m.Type)
	k := at14
	if off == alg.OffCallID {
		k = at12
	}
	return (h.mode == invPeerView && k == alg.PeerCallID) || (h.mode == invInsideView && k == alg.OwnCallID)
}

func (h *invHandler) CallIDHigh(m *alg.Msg, off int, hi byte) byte {
	if !h.applies(m, off) || h.identity {
		return hi
	}
	if h.mode == invPeerView {
		if k := h.c.known(func(k *conntrack.CallInfo) bool { return byte(k.InsideID>>8) == hi }); k != nil {
			return byte(k.OuterID >> 8)
		}
		return hi
	}
	if k := h.c.known(func(k *conntrack.CallInfo) bool { return byte(k.OuterID>>8) == hi }); k != nil {
		return byte(k.InsideID >> 8)
	}
	return hi
}

func (h *invHandler) CallIDLow(m *alg.Msg, off int, id uint16, newHi byte) byte {
	if !h.applies(m, off) || h.identity {
		return byte(id)
	}
	if h.mode == invPeerView {
		if k := h.c.known(func(k *conntrack.CallInfo) bool { return k.InsideID == id && byte(k.OuterID>>8) == newHi }); k != nil {
			return byte(k.OuterID)
		}
		return byte(id)
	}
	if k := h.c.known(func(k *conntrack.CallInfo) bool { return k.OuterID == id }); k != nil {
		return byte(k.InsideID)
	}
	return byte(id)
}

func (h *invHandler) Result(m *alg.Msg, r byte) byte { return r }
func (h *invHandler) Message(m *alg.Msg)             {}
func (h *invHandler) Framing(r alg.Reason)           {}
