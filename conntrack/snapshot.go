package conntrack

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/pptpgw/pptpgw/alg"
)

// SnapshotVersion is the version of the state file's format.
const SnapshotVersion = 1

// Snapshot is the table as the state file keeps it: control connections
// with their stream positions (so a restarted daemon resumes mid-message,
// even between the two bytes of a Call ID), their calls and the public
// endpoints learnt for them.
type Snapshot struct {
	Version int        `json:"version"`
	Conns   []ConnSnap `json:"conns"`
}

// ConnSnap is one control connection in a Snapshot.
type ConnSnap struct {
	Inside    string          `json:"inside"`
	Outside   string          `json:"outside"`
	Public    string          `json:"public"`
	Identity  bool            `json:"identity,omitempty"`
	Local     bool            `json:"local,omitempty"`
	Role      Role            `json:"role"`
	MidStream bool            `json:"mid_stream,omitempty"`
	Closing   bool            `json:"closing,omitempty"`
	Ended     int64           `json:"ended,omitempty"`
	LastSeen  int64           `json:"last_seen"`
	Unalloc   int             `json:"unalloc,omitempty"`
	Resv      [2]int16        `json:"resv"`
	Cur       int             `json:"cur"` // index in Calls of the reply being walked, or -1
	Out       alg.StreamState `json:"out"`
	In        alg.StreamState `json:"in"`
	Calls     []CallSnap      `json:"calls"`
	// Origin: the node whose replicated record this is (nat/ha); "" this one.
	Origin string `json:"origin,omitempty"`
	// Seg: the two endpoints its segments carry when they are not Inside
	// and Outside (hairpin NAT: the client's own endpoint, where the PAC
	// sees the address SNAT gave it); absent otherwise.
	Seg []string `json:"seg,omitempty"`
}

// CallSnap is one call in a Snapshot.
type CallSnap struct {
	Role      Role      `json:"role"`
	State     CallState `json:"state"`
	Inside    string    `json:"inside"`
	InsideID  uint16    `json:"inside_id"`
	HasInside bool      `json:"has_inside"`
	Public    string    `json:"public"`
	OuterID   uint16    `json:"outer_id"`
	Peer      string    `json:"peer"`
	PeerID    uint16    `json:"peer_id"`
	HasPeer   bool      `json:"has_peer"`
	Identity  bool      `json:"identity,omitempty"`
	PickedUp  bool      `json:"picked_up,omitempty"`
	Created   int64     `json:"created"`
	Since     int64     `json:"since"`
	LastSeen  int64     `json:"last_seen"`
	PktsIn    uint64    `json:"packets_in"`
	PktsOut   uint64    `json:"packets_out"`
	BytesIn   uint64    `json:"bytes_in"`
	BytesOut  uint64    `json:"bytes_out"`
	// Auth, MPPE: CallInfo's; Negotiating: its PPP link was still being
	// watched (policy.go).
	Auth        string `json:"auth,omitempty"`
	MPPE        string `json:"mppe,omitempty"`
	Negotiating bool   `json:"negotiating,omitempty"`
}

func epString(e Endpoint) string { return netip.AddrPortFrom(e.Addr.IP(), e.Port).String() }

func parseEP(s string) (Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Unmap().Is4() {
		return Endpoint{}, fmt.Errorf("endpoint %q: not IPv4 addr:port", s)
	}
	return Endpoint{AddrFrom(ap.Addr()), ap.Port()}, nil
}

func parseAddr(s string) (Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Unmap().Is4() {
		return Addr{}, fmt.Errorf("address %q: not IPv4", s)
	}
	return AddrFrom(a), nil
}

// Snapshot returns the table's state.
func (t *Table) Snapshot() Snapshot {
	var b StateBuf
	t.SnapshotTo(&b)
	return b.Snapshot()
}

// snap is c as a Snapshot keeps it (t.mu held).
func (x *index) snap(c *Conn) ConnSnap {
	var b StateBuf
	b.add(x, c)
	it := stateIter{b: &b}
	return it.snap()
}

// Restore loads a snapshot into an empty table. Entries that do not parse
// or that collide with one already restored are skipped and counted in the
// returned number; the rest is restored.
func (t *Table) Restore(s Snapshot) (skipped int, err error) {
	if s.Version != SnapshotVersion {
		return 0, fmt.Errorf("snapshot version %d: this pptpgw reads version %d", s.Version, SnapshotVersion)
	}
	t.lock()
	defer t.unlock()
	for _, cs := range s.Conns {
		skipped += t.restoreConn(cs)
	}
	t.bump()
	return skipped, nil
}

// restoreConn restores one connection and returns how many entries (the
// connection, or calls of it) it skipped.
func (t *Table) restoreConn(cs ConnSnap) (skipped int) {
	in, err1 := parseEP(cs.Inside)
	out, err2 := parseEP(cs.Outside)
	pub, err3 := parseEP(cs.Public)
	if err1 != nil || err2 != nil || err3 != nil {
		return 1
	}
	key := makeConnKey(in, out)
	if len(cs.Seg) != 0 {
		if len(cs.Seg) != 2 {
			return 1
		}
		a, errA := parseEP(cs.Seg[0])
		b, errB := parseEP(cs.Seg[1])
		if errA != nil || errB != nil {
			return 1
		}
		key = makeConnKey(a, b)
	}
	if t.idx.conns.get(key) != nil || t.idx.connAt(in, out) != nil {
		return 1
	}
	c := t.newConn(key, ConnSpec{Inside: in, Outside: out, Public: pub, Identity: cs.Identity, Local: cs.Local})
	t.Counters.ConnsOpened.Add(^uint64(0))
	c.Role, c.midStream, c.closing, c.lastSeen = cs.Role, cs.MidStream, cs.Closing, cs.LastSeen
	if cs.Ended != 0 {
		c.takeRare().ended = cs.Ended
	}
	c.unalloc = uint16(min(max(cs.Unalloc, 0), math.MaxUint16)) // a count of requests: a bad file cannot overflow it
	if cs.Origin != "" {
		c.rep().origin = cs.Origin
	}
	c.out.SetState(cs.Out)
	c.in.SetState(cs.In)
	if c.ended() == 0 {
		c.unconfirmed, c.stale = true, [2]bool{true, true} // state.go
		c.takeRare().restoredAt = t.clock()
	}
	for i, ks := range cs.Calls {
		k, ok := t.restoreCall(c, ks)
		if !ok {
			skipped++
		} else if i == cs.Cur {
			k.setFlag(fCur, true)
		}
	}
	for d, b := range cs.Resv {
		if b >= 0 && b <= 255 && t.idx.room(out.Addr, byte(b)) {
			t.reserve(c, d, byte(b))
		}
	}
	return skipped
}

func (t *Table) restoreCall(c *Conn, ks CallSnap) (*Call, bool) {
	inside, err1 := parseAddr(ks.Inside)
	public, err2 := parseAddr(ks.Public)
	peer, err3 := parseAddr(ks.Peer)
	if err1 != nil || err2 != nil || err3 != nil || ks.State > StateRefused {
		return nil, false
	}
	k := &Call{conn: c, Inside: inside, InsideID: ks.InsideID, Public: public, OuterID: ks.OuterID, Peer: peer,
		PeerID: ks.PeerID, created: ks.Created}
	k.setRole(ks.Role)
	k.putState(ks.State)
	k.setFlag(fHasInside, ks.HasInside)
	k.setFlag(fHasPeer, ks.HasPeer)
	k.setFlag(fIdentity, ks.Identity)
	k.setFlag(fPickedUp, ks.PickedUp)
	k.setSince(ks.Since)
	k.lastSeen.Store(ks.LastSeen)
	k.pktsIn.Store(ks.PktsIn)
	k.pktsOut.Store(ks.PktsOut)
	k.bytesIn.Store(ks.BytesIn)
	k.bytesOut.Store(ks.BytesOut)
	k.restorePPP(ks.Auth, ks.MPPE, ks.Negotiating)
	if k.hasInside() && !k.identity() && !t.idx.free(peer, k.OuterID) {
		return nil, false
	}
	t.idx.insert(k)
	if k.State() == StateEstablished || k.State() == StateClosing {
		t.publish(k)
	}
	return k, true
}
