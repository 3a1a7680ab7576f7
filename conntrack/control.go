package conntrack

import (
	"math"

	"github.com/pptpgw/pptpgw/alg"
)

// Segment is one TCP segment of a control connection as the packet path
// decoded it. Payload is rewritten in place.
type Segment struct {
	Src, Dst           Endpoint
	Seq, Ack           uint32
	SYN, FIN, RST, ACK bool
	Payload            []byte
}

// ConnSpec says which end of a new control connection is inside and which
// public endpoint the kernel gave it.
type ConnSpec struct {
	Inside, Outside Endpoint
	Public          Endpoint
	// Identity: the kernel does not translate this connection; its calls
	// keep their IDs and their GRE passes untouched.
	Identity bool
	// Local: a control connection of the router itself (queued from
	// OUTPUT and INPUT): Inside is the router's end and Public its own
	// address. Nothing is NATed, but its calls share the outer Call IDs
	// with the translated ones (a router's pptp and a LAN client's both
	// start at Call ID 0 towards the same server, and their GRE reaches the
	// same address), so a colliding Call ID is rewritten like any other.
	// The connection policy, the PPP policy and the per-inside limit do
	// not apply to the router's own calls, and the kernel fast paths do
	// not carry them (their GRE needs no address translation).
	Local bool
}

// Resolver tells the roles of a control connection the table has not seen
// yet. ok false: not known yet (the packet passes untouched and the next
// one asks again).
type Resolver interface {
	Resolve(src, dst Endpoint) (spec ConnSpec, ok bool)
}

// SegmentResolver is a Resolver that also reads the segment's flags: the
// kernel's (nat/gateway) skips a connection's first SYN, whose conntrack
// entry is not confirmed yet, and asks about an answer (a SYN-ACK) the
// way round that finds it first.
type SegmentResolver interface {
	ResolveSegment(seg *Segment) (spec ConnSpec, ok bool)
}

func resolve(r Resolver, seg *Segment) (ConnSpec, bool) {
	if sr, ok := r.(SegmentResolver); ok {
		return sr.ResolveSegment(seg)
	}
	return r.Resolve(seg.Src, seg.Dst)
}

// ControlResult is the table's verdict on a control segment.
type ControlResult struct {
	Tracked  bool // the segment belongs to a tracked connection
	Modified bool // payload bytes were rewritten
	Drop     bool // beyond a gap in the sequence space: drop, TCP resends it
	Outbound bool // travelling from the inside end
	// Sum is the RFC 1624 change sum of the rewrites, for the TCP checksum.
	Sum uint32
	// Denied: a new connection the policy does not allow (policy.go): not
	// tracked, drop.
	Denied bool
}

// Conn is one control connection: its two stream trackers and its calls.
// Fields are ordered to leave no padding: at one connection per call, its
// size class is most of a call's memory.
type Conn struct {
	// serial: for logs (ConnInfo.Serial), 32 bits: it wraps after 4
	// billion connections, skipping 0.
	serial  uint32
	Inside  Endpoint
	Outside Endpoint
	Public  Endpoint
	// pending allocation per direction (0 out, 1 in): the outer high byte
	// reserved when a segment ended after a Call ID's high byte, and the
	// allocation of the reply being walked.
	resv     [2]int16 // -1: none
	Identity bool     // the kernel does not NAT it (ConnSpec.Identity)
	Local    bool     // the router's own (ConnSpec.Local)
	unalloc  uint16   // requests that got no outer ID: their replies are refused (saturating)
	// lastPeerID: the outside end's Call ID last seen travelling out on a
	// mid-stream connection, for the call picked up next.
	lastPeerID  uint16
	Role        Role
	midStream   bool // first seen without its SYN: calls may be picked up
	hasLastPeer bool
	closing     bool
	unconfirmed bool       // state.go: restored, not confirmed yet (see connRare.restoredAt)
	stale       [2]bool    // state.go: a direction's position may be older than the stream
	out, in     alg.Stream // out: from the inside end
	// calls: the oldest call; the others follow through Call.connNext.
	// The inside end's reply being walked, if any, is the one with cur.
	calls    *Call
	lastSeen int64
	rare     *connRare // nil: none of its fields is set
}

// connRare holds what a connection needs only in part of its life, so a
// live connection of a table that does not replicate (nearly all of them)
// fits a smaller size class (112 bytes, not 128). It is taken on the
// control path (a restore, an end, replication's first touch), never on
// the GRE path.
type connRare struct {
	connReplica // replica.go: whose record it is, for nat/ha
	// restoredAt: state.go: when c was restored from the state file,
	// kept while c is unconfirmed (not confirmed yet by the kernel's
	// conntrack table or a segment) or a direction stale (its position
	// may be older than the stream: a write before a crash); then 0
	// (settleRestored).
	restoredAt int64
	ended      int64 // when the connection ended (0: alive)
}

// takeRare is c's rare part, taken when it holds none.
func (c *Conn) takeRare() *connRare {
	if c.rare == nil {
		c.rare = new(connRare)
	}
	return c.rare
}

// ended is when c ended (0: alive).
func (c *Conn) ended() int64 {
	if c.rare == nil {
		return 0
	}
	return c.rare.ended
}

// restoredAt is when c was restored from the state file, while that
// matters (0: not restored, or confirmed with no direction stale).
func (c *Conn) restoredAt() int64 {
	if c.rare == nil {
		return 0
	}
	return c.rare.restoredAt
}

// Info describes the connection for logs.
func (c *Conn) Info() ConnInfo {
	return ConnInfo{Inside: c.Inside, Outside: c.Outside, Public: c.Public, Role: c.Role, Identity: c.Identity, Local: c.Local, Serial: uint64(c.serial),
		Node: c.replicaOf().origin}
}

// Control walks one control segment: it finds or creates the connection,
// runs the direction's stream tracker, and applies what the messages say to
// the calls.
func (t *Table) Control(seg *Segment, now int64, r Resolver) ControlResult {
	key := makeConnKey(seg.Src, seg.Dst)
	// The resolver may ask the kernel (a netlink round trip): do that
	// without the lock, so GRE lookups never wait for it.
	t.mu.RLock()
	c := t.idx.conn(seg.Src, seg.Dst)
	fresh := c == nil || seg.SYN && (c.replaceable() || c.reopened(seg))
	t.mu.RUnlock()
	var spec ConnSpec
	resolved := false
	// A SYN or SYN-ACK on the ports of an ended connection starts a new
	// one (ports are reused, e.g. after a RST): the SYN usually cannot be
	// resolved yet (its kernel entry is unconfirmed), the SYN-ACK can.
	if fresh {
		if seg.RST || (seg.FIN && len(seg.Payload) == 0) {
			return ControlResult{}
		}
		if spec, resolved = resolve(r, seg); !resolved {
			return ControlResult{}
		}
		if !spec.Local && t.controlDenied(spec) { // policy.go: --allow-inside, --allow-peer
			return ControlResult{Drop: true, Denied: true}
		}
	}
	t.lock()
	defer t.unlock()
	c = t.idx.conn(seg.Src, seg.Dst)
	if c != nil && seg.SYN && resolved && (c.replaceable() && !(seg.ACK && c.synDup(seg)) || c.reopened(seg)) {
		// A new connection on the same ports after the old one ended
		// (or one restored from before a reboot, or one whose end went
		// unseen).
		t.removeConn(c)
		c = nil
	}
	if c == nil {
		if !resolved {
			// Removed meanwhile (timeout): the next packet resolves again.
			return ControlResult{}
		}
		c = t.newConn(key, spec)
		c.firstSeen(seg)
	} else if t.stray(c, seg) {
		return ControlResult{Tracked: true, Outbound: seg.Src == c.Inside}
	} else if c.foreign(seg) {
		spec := ConnSpec{Inside: c.Inside, Outside: c.Outside, Public: c.Public, Identity: c.Identity, Local: c.Local}
		t.removeConn(c)
		c = t.newConn(key, spec)
		c.firstSeen(seg) // mid-stream: its calls are picked up
	}
	out := seg.Src == c.Inside
	res := ControlResult{Tracked: true, Outbound: out}
	c.lastSeen = now
	t.adopt(c) // replica.go: a connection whose packets this node sees is its own
	dir, rev := &c.out, &c.in
	if !out {
		dir, rev = &c.in, &c.out
	}
	h := t.handler(c, out, now)
	if seg.ACK {
		rev.Ack(seg.Ack)
	}
	c.unconfirmed = false // state.go: it is alive
	sr := t.walkSegment(c, out, dir, seg, h)
	if sr.Gap {
		t.Counters.OutOfOrder.Add(1)
		res.Drop = true
		return res
	}
	if sr.Retrans {
		t.Counters.Retransmissions.Add(1)
	}
	res.Modified, res.Sum = sr.Modified, sr.Sum
	t.teardown(c, dir, seg, now)
	return res
}

// firstSeen sets up the stream trackers of c, new with segment seg.
func (c *Conn) firstSeen(seg *Segment) {
	c.midStream = !seg.SYN
	if seg.SYN && seg.ACK {
		// The usual first sight: the opener's SYN could not be resolved
		// (its kernel conntrack entry is unconfirmed where pptpgw sees
		// it). The SYN-ACK's ack says where the opener's data starts: its
		// first message is walked from its first byte, so even a
		// malformed one is seen and counted.
		opener := &c.in
		if seg.Src != c.Inside {
			opener = &c.out
		}
		opener.Expect(seg.Ack)
	}
}

// teardown applies a RST or FIN of segment seg, walked by dir, to c.
func (t *Table) teardown(c *Conn, dir *alg.Stream, seg *Segment, now int64) {
	switch {
	case seg.RST:
		c.out.Reset(t.handler(c, true, now)) // a message cut short by the reset is counted
		c.in.Reset(t.handler(c, false, now))
		t.endConn(c, now, "rst")
	case seg.FIN && !dir.FinSeen():
		// A FIN behind the stream, not a retransmission of the one
		// seen: not the end of this direction.
		t.strayed(c, ReasonStrayFIN)
	case c.out.FinSeen() && c.in.FinSeen():
		t.endConn(c, now, "fin")
	case seg.FIN:
		t.closing(c)
	}
}

// reopened reports a new SYN-ACK on the ports of c when c has not ended:
// the endpoints started a new connection and c's end went unseen (it
// passed while a firewall reload took pptpgw's rules away, or just before
// a crash the state file had not caught up with). The evidence: it
// answers the last SYN seen there, as the kernel's conntrack resyncs on a
// SYN/ACK acknowledging a SYN it had ignored; or c was restored and its
// answering end has said nothing since, as a live end never sends a new
// SYN-ACK (the SYN may have passed while the daemon was down).
func (c *Conn) reopened(seg *Segment) bool {
	if !seg.SYN || !seg.ACK || c.synDup(seg) {
		return false
	}
	// The answering end had spoken before (else this is the handshake
	// that opened c).
	opener, responder, d := &c.out, &c.in, 1
	if seg.Src == c.Inside {
		opener, responder, d = &c.in, &c.out, 0
	}
	return responder.Started() && (opener.IsISN(seg.Ack-1) || opener.SYNNoted(seg.Ack-1) || c.stale[d])
}

// side is seg's direction (0 out, 1 in, as stale's) and its stream tracker.
func (c *Conn) side(seg *Segment) (int, *alg.Stream) {
	if seg.Src == c.Inside {
		return 0, &c.out
	}
	return 1, &c.in
}

// stray reports, counts and passes a segment out of place on live
// connection c (straySYN, strayRST): not walked, nothing acknowledged, c
// not seen alive by it, as the kernel's conntrack ignores these too. A
// stray SYN is noted, for the SYN-ACK that may answer it (reopened).
func (t *Table) stray(c *Conn, seg *Segment) bool {
	if !(seg.SYN && c.straySYN(seg) || seg.RST && c.strayRST(seg)) {
		return false
	}
	reason := ReasonStrayRST
	if seg.SYN {
		_, dir := c.side(seg)
		dir.NoteSYN(seg.Seq)
		reason = ReasonStraySYN
	}
	t.strayed(c, reason)
	return true
}

// Reasons of the malformed events a stray segment gives (Observer.Malformed),
// rate-limited in the log like the others.
const (
	ReasonStraySYN = "stray_syn"
	ReasonStrayRST = "stray_rst"
	ReasonStrayFIN = "stray_fin"
)

// strayed counts a stray segment of c and reports it.
func (t *Table) strayed(c *Conn, reason string) {
	t.Counters.Strays.Add(1)
	t.emitConn(evMalformed, c.Info(), reason)
}

// strayRST reports a RST on c whose sequence number lies outside its
// direction's recent sequence space: ahead of its next byte, or more than
// maxRSTBehind behind it. A genuine RST carries its sender's next sequence
// number, or what the receiver acknowledged last (a closed socket's answer
// to a segment), which in-flight data keeps within a window of it; the
// receiver ignores one outside its window (RFC 5961), and the kernel's
// conntrack marks it invalid. Where c's position cannot tell (not
// started, or restored and possibly behind), a RST ends c as before.
func (c *Conn) strayRST(seg *Segment) bool {
	d, dir := c.side(seg)
	return dir.Started() && !c.stale[d] && dir.Next()-seg.Seq > maxRSTBehind
}

// maxRSTBehind is the largest TCP window without scaling: a control
// connection's unacknowledged bytes are a few messages.
const maxRSTBehind = 1<<16 - 1

// straySYN reports a SYN (or SYN-ACK) on live connection c that a new
// connection on its ports is not shown to have sent (reopened decides
// that for a SYN-ACK before this): one that neither repeats its
// direction's SYN nor sits just before its next byte. Anyone who knows or
// guesses the ports can send one; walking it would restart the direction
// there and lose the connection's own bytes. It is noted instead, so that
// the SYN-ACK answering it shows the new connection.
func (c *Conn) straySYN(seg *Segment) bool {
	_, dir := c.side(seg)
	return dir.Started() && !dir.IsISN(seg.Seq) && seg.Seq+1 != dir.Next()
}

// maxResume bounds how far past its saved position a restored
// direction's first segment may lie and still be its own stream: the
// state file lags the daemon by a write gap's worth of control messages,
// not a megabyte.
const maxResume = 1 << 20

// foreign reports a data segment that cannot belong to restored
// connection c: its direction has shown nothing since the restart and the
// segment lies far from the saved position, in another connection's
// sequence space. c ended unseen just before a crash, and a new
// connection took its ports, its handshake walked by the daemon that died.
func (c *Conn) foreign(seg *Segment) bool {
	d, dir := c.side(seg)
	if c.restoredAt() == 0 || !c.stale[d] || seg.SYN || len(seg.Payload) == 0 || !dir.Started() {
		return false
	}
	dist := seg.Seq - dir.Next()
	return dist > maxResume && -dist > maxResume
}

// synDup reports a SYN-ACK that repeats the one its sender's direction
// started with (a retransmission, not a new connection on the same ports).
func (c *Conn) synDup(seg *Segment) bool {
	if seg.Src == c.Inside {
		return c.out.IsISN(seg.Seq)
	}
	return c.in.IsISN(seg.Seq)
}

func (t *Table) newConn(key connKey, spec ConnSpec) *Conn {
	if t.connSeq++; uint32(t.connSeq) == 0 {
		t.connSeq++
	}
	c := &Conn{serial: uint32(t.connSeq), Inside: spec.Inside, Outside: spec.Outside, Public: spec.Public,
		Identity: spec.Identity, Local: spec.Local, resv: [2]int16{-1, -1}}
	t.idx.addConn(c, key)
	t.Counters.ConnsOpened.Add(1)
	t.emitConn(evConnOpened, c.Info(), "")
	return c
}

// closing marks every call of c closing (one FIN, CCRQ, StopCCRQ).
func (t *Table) closing(c *Conn) {
	if !c.closing {
		t.idx.changes++
	}
	c.closing = true
	for k := range c.eachCall {
		if k.State() == StateEstablished {
			t.idx.setState(k, StateClosing)
		}
	}
}

// endConn ends every call of c; the connection itself lingers for its
// rewrite records until CloseLinger has passed.
func (t *Table) endConn(c *Conn, now int64, reason string) {
	for k := range c.eachCallBack {
		t.endCall(k, reason)
	}
	if c.ended() == 0 {
		c.takeRare().ended = now
		t.idx.changes++
		t.Counters.ConnsClosed.Add(1)
		t.emitConn(evConnClosed, c.Info(), reason)
	}
}

func (t *Table) removeConn(c *Conn) {
	for k := range c.eachCallBack {
		t.endCall(k, "control-closed")
	}
	for d := range c.resv {
		t.release(c, d)
	}
	t.idx.delConn(c)
	t.replicaGone(c)
	if c.ended() == 0 {
		t.Counters.ConnsClosed.Add(1)
		t.emitConn(evConnClosed, c.Info(), "removed")
	}
}

// handler applies one direction's messages to the table. It is embedded in
// Conn so that passing it to the tracker allocates nothing.
type handler struct {
	t   *Table
	c   *Conn
	out bool
	now int64
}

// handler is the table's handler for direction out of c, walked under the
// write lock: one for the table rather than two in every connection (a
// connection's bytes count at scale) and no allocation per segment.
func (t *Table) handler(c *Conn, out bool, now int64) *handler {
	t.h = handler{t: t, c: c, out: out, now: now}
	return &t.h
}

func (h *handler) dir() int {
	if h.out {
		return 0
	}
	return 1
}

// allocating reports whether an own Call ID field of type t travelling out
// gets a new outer ID.
func allocating(t alg.MsgType) bool {
	return t == alg.OCRQ || t == alg.OCRP || t == alg.ICRQ || t == alg.ICRP
}

func fieldKind(t alg.MsgType, off int) alg.FieldKind {
	at12, at14 := alg.Fields(t)
	if off == alg.OffCallID {
		return at12
	}
	return at14
}

func (h *handler) CallIDHigh(m *alg.Msg, off int, hi byte) byte {
	c := h.c
	if c.Identity {
		return hi
	}
	kind := fieldKind(m.Type, off)
	switch {
	case h.out && kind == alg.OwnCallID && allocating(m.Type):
		// A slot still reserved here belongs to a field the stream gave
		// up on (a new SYN restarted it): give it back first.
		h.t.release(c, h.dir())
		b, ok := h.t.chooseBucket(c, hi)
		if !ok {
			return hi
		}
		h.t.reserve(c, h.dir(), b)
		return b
	case h.out && kind == alg.OwnCallID:
		// Exact when the whole ID is in this segment; split, the inside
		// high byte names one outer bucket unless that bucket overflowed.
		if id, ok := m.Uint16(off); ok {
			if k := c.findInside(id, hi); k != nil {
				return byte(k.OuterID >> 8)
			}
		} else if k := c.findInsideHi(hi); k != nil {
			return byte(k.OuterID >> 8)
		}
	case !h.out && kind == alg.PeerCallID:
		if k := c.findOuterHi(hi); k != nil {
			return byte(k.InsideID >> 8)
		}
	}
	return hi
}

func (h *handler) CallIDLow(m *alg.Msg, off int, id uint16, newHi byte) byte {
	c := h.c
	lo := byte(id)
	if c.Identity {
		if h.out && fieldKind(m.Type, off) == alg.OwnCallID && allocating(m.Type) {
			h.t.allocCall(c, m.Type, id, id, h.now)
		}
		return lo
	}
	kind := fieldKind(m.Type, off)
	switch {
	case h.out && kind == alg.OwnCallID && allocating(m.Type):
		d := h.dir()
		outer, ok := uint16(0), c.resv[d] >= 0
		if ok {
			outer, ok = h.t.chooseLow(c.Outside.Addr, newHi, lo)
			h.t.release(c, d)
		}
		if !ok {
			h.t.Counters.IDsExhausted.Add(1)
			if m.Type == alg.OCRQ || m.Type == alg.ICRQ {
				// No call for this request: its reply is refused (replyIn).
				if c.unalloc < math.MaxUint16 {
					c.unalloc++
				}
			}
			return lo
		}
		k := h.t.allocCall(c, m.Type, id, outer, h.now)
		if outer != id {
			h.t.Counters.Rewrites.Add(1)
		}
		return byte(k.OuterID)
	case h.out && kind == alg.OwnCallID:
		if k := c.findInside(id, newHi); k != nil {
			if k.OuterID != id {
				h.t.Counters.Rewrites.Add(1)
			}
			return byte(k.OuterID)
		}
	case !h.out && kind == alg.PeerCallID:
		if k := c.findOuter(id); k != nil {
			if k.InsideID != id {
				h.t.Counters.Rewrites.Add(1)
			}
			return byte(k.InsideID)
		}
	}
	return lo
}

func (h *handler) Result(m *alg.Msg, result byte) byte {
	own, _ := m.Uint16(alg.OffCallID)
	peerField, _ := m.Uint16(alg.OffPeerCallID)
	if h.out {
		// A reply from the inside end: its own ID was just allocated.
		return h.t.replyOut(h.c, peerField, result, h.now)
	}
	return h.t.replyIn(h.c, own, peerField, result, h.now)
}

func (h *handler) Message(m *alg.Msg) {
	t, c := h.t, h.c
	t.Counters.ControlMessages.Add(1)
	id, _ := m.Uint16(alg.OffCallID)
	switch m.Type {
	case alg.OCRQ, alg.ICRQ:
		if !h.out {
			t.requestIn(c, m.Type, id, h.now)
		}
	case alg.CCRQ:
		// CCRQ carries the PNS's own ID.
		if k := h.callByOwn(id); k != nil && k.State() == StateEstablished {
			t.idx.setState(k, StateClosing)
		}
	case alg.CDN:
		// CDN carries the PAC's own ID (RFC 2637; Linux overwrites it with
		// the PNS's, which the fallback below also finds).
		k := h.callByOwn(id)
		if k == nil {
			k = h.callByOther(id)
		}
		if k != nil {
			t.endCall(k, "cdn")
		}
	case alg.StopCCRQ:
		t.closing(c)
	case alg.StopCCRP:
		t.endConn(c, h.now, "stop-control-connection")
	case alg.ICCN, alg.WEN, alg.SLI, alg.OCRP, alg.ICRP:
		if !h.out && !c.Identity {
			// Peer ID fields of a call this table never saw set up: pick it up.
			if _, has := c.findOuterOK(id); !has && m.Type != alg.OCRP && m.Type != alg.ICRP {
				t.pickUp(c, id, h.now)
			}
		}
		if h.out && (m.Type == alg.ICCN || m.Type == alg.WEN || m.Type == alg.SLI) && c.midStream {
			// The outside end's Call ID travelling out: a picked-up call
			// learns it here when it is the only one that could own it.
			c.lastPeerID, c.hasLastPeer = id, true
			t.bindPeer(c, id)
		}
	}
	if m.Type >= alg.OCRQ {
		for k := range c.eachCall {
			if k.State() != StateRefused {
				k.lastSeen.Store(h.now)
			}
		}
	}
}

// callByOwn finds the call a message's own Call ID field names, in the
// direction the message travels: the inside's ID going out, the peer's
// coming in.
func (h *handler) callByOwn(id uint16) *Call { return h.findCall(id, insideID, peerID) }

// callByOther finds a call by the other end's ID as it travels here: the
// peer's going out, ours (the outer ID) coming in.
func (h *handler) callByOther(id uint16) *Call { return h.findCall(id, peerID, outerID) }

// callIDKind names one of a call's Call IDs.
type callIDKind uint8

const (
	insideID callIDKind = iota // the inside PNS's or PAC's own
	peerID                     // the peer's
	outerID                    // the one we give the peer for the inside's
)

// findCall finds the call whose ID of kind out (a message going out) or
// in (coming in) is id.
func (h *handler) findCall(id uint16, out, in callIDKind) *Call {
	kind := in
	if h.out {
		kind = out
	}
	for k := range h.c.eachCall {
		if k.hasID(kind, id) {
			return k
		}
	}
	return nil
}

// hasID reports whether the call's ID of that kind is known and is id.
func (k *Call) hasID(kind callIDKind, id uint16) bool {
	switch kind {
	case insideID:
		return k.hasInside() && k.InsideID == id
	case peerID:
		return k.hasPeer() && k.PeerID == id
	default:
		return k.hasInside() && k.OuterID == id
	}
}

func (h *handler) Framing(r alg.Reason) {
	h.t.Counters.Malformed.Add(1)
	h.t.emitConn(evMalformed, h.c.Info(), r.String())
}
