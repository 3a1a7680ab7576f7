package conntrack_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/conntrack"
)

// Addresses used throughout: 10/8 is inside, everything else outside.
var (
	pub1  = addr("203.0.113.1")
	pub2  = addr("203.0.113.2")
	pac1  = addr("198.51.100.10") // an outside PAC
	pac2  = addr("198.51.100.20")
	cli1  = addr("10.0.0.1")
	cli2  = addr("10.0.0.2")
	cli3  = addr("10.0.0.3")
	srv1  = addr("10.0.1.1")   // an inside PAC behind a port-forward
	rcli1 = addr("192.0.2.50") // an outside PNS
	rcli2 = addr("192.0.2.60") // another outside PNS
	t0    = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
)

func addr(s string) conntrack.Addr { return conntrack.AddrFrom(netip.MustParseAddr(s)) }

// clientAddr returns the i-th distinct inside client address (10.1.x.y).
func clientAddr(i int) conntrack.Addr { return conntrack.Addr{10, 1, byte(i >> 8), byte(i)} }

func ep(a conntrack.Addr, port uint16) conntrack.Endpoint {
	return conntrack.Endpoint{Addr: a, Port: port}
}

// fakeResolver says 10/8 is inside; the public address is pub1 unless
// public names another for the inside address; identity lists the inside
// addresses the kernel does not NAT. It is read-only once in use.
type fakeResolver struct {
	public   map[conntrack.Addr]conntrack.Addr
	identity map[conntrack.Addr]bool
	refuse   bool // not known yet
}

func isInside(a conntrack.Addr) bool { return a[0] == 10 }

func (r *fakeResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if r.refuse {
		return conntrack.ConnSpec{}, false
	}
	in, out := src, dst
	if !isInside(in.Addr) {
		in, out = dst, src
	}
	if !isInside(in.Addr) {
		return conntrack.ConnSpec{}, false
	}
	pub := pub1
	if p, ok := r.public[in.Addr]; ok {
		pub = p
	}
	return conntrack.ConnSpec{Inside: in, Outside: out, Public: ep(pub, in.Port),
		Identity: r.identity[in.Addr]}, true
}

// PPTP control messages: 12-byte header and a body of the RFC length.

func msg(t alg.MsgType) []byte {
	b := pptpmsg.Msg(uint16(t))
	// Fill the rest of the body with a recognisable pattern so that a
	// stray rewrite outside the Call ID fields shows.
	for i := pptpmsg.HeaderLen; i < len(b); i++ {
		b[i] = byte(0xA0 + i)
	}
	return b
}

func put16(b []byte, off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }
func u16(b []byte, off int) uint16      { return binary.BigEndian.Uint16(b[off:]) }

func sccrq() []byte {
	b := msg(alg.SCCRQ)
	put16(b, 12, 0x0100)
	return b
}

func sccrp() []byte {
	b := msg(alg.SCCRP)
	put16(b, 12, 0x0100)
	b[14] = 1
	return b
}

func stopRQ() []byte { b := msg(alg.StopCCRQ); b[12] = 1; return b }
func stopRP() []byte { b := msg(alg.StopCCRP); b[12] = 1; return b }
func echoRQ() []byte { return msg(alg.EchoRQ) }

func ocrq(id uint16) []byte                    { return callRQ(alg.OCRQ, id) }
func ocrp(id, peer uint16, result byte) []byte { return callRP(alg.OCRP, id, peer, result) }
func icrq(id uint16) []byte                    { return callRQ(alg.ICRQ, id) }
func icrp(id, peer uint16, result byte) []byte { return callRP(alg.ICRP, id, peer, result) }

// callRQ is an OCRQ or ICRQ with its Call ID; callRP a reply with its
// Call ID, Peer's Call ID and result code.
func callRQ(typ alg.MsgType, id uint16) []byte {
	b := msg(typ)
	put16(b, 12, id)
	return b
}

func callRP(typ alg.MsgType, id, peer uint16, result byte) []byte {
	b := callRQ(typ, id)
	put16(b, 14, peer)
	b[16] = result
	return b
}

func iccn(peer uint16) []byte { b := msg(alg.ICCN); put16(b, 12, peer); return b }
func wen(peer uint16) []byte  { b := msg(alg.WEN); put16(b, 12, peer); return b }
func sli(peer uint16) []byte  { b := msg(alg.SLI); put16(b, 12, peer); return b }
func ccrq(id uint16) []byte   { b := msg(alg.CCRQ); put16(b, 12, id); return b }

func cdn(id uint16) []byte {
	b := msg(alg.CDN)
	put16(b, 12, id)
	b[14] = 3 // result: Lost Carrier... whatever, not a Call ID
	put16(b, 16, 0)
	return b
}

func cat(ms ...[]byte) []byte {
	var out []byte
	for _, m := range ms {
		out = append(out, m...)
	}
	return out
}

const (
	dirOut = 0 // from the inside end
	dirIn  = 1 // from the outside end
)

// flow is one control connection as the two TCP ends send it, fed through
// the table with consistent sequence and acknowledgment numbers.
type flow struct {
	tb   testing.TB
	tbl  *conntrack.Table
	res  conntrack.Resolver
	ends [2]conntrack.Endpoint // [dirOut]: the inside end, [dirIn]: the outside end
	next [2]uint32             // next sequence number each end sends
	syn  [2]bool               // each end has sent its SYN
	now  int64
	// last is the result of the last segment sent.
	last conntrack.ControlResult
	// ackLag, when set for an end, is the acknowledgment number it sends
	// instead of the other end's position (its ACKs got lost).
	ackLag [2]*uint32
	// noCheck skips the per-segment checks (benchmarks).
	noCheck bool
}

func newFlow(tb testing.TB, tbl *conntrack.Table, res conntrack.Resolver, inside, outside conntrack.Endpoint) *flow {
	return &flow{tb: tb, tbl: tbl, res: res, ends: [2]conntrack.Endpoint{inside, outside},
		next: [2]uint32{1000, 0xFFFFFF00}, now: t0.UnixNano()}
}

// pnsFlow is a client inside dialling out to a PAC.
func pnsFlow(tb testing.TB, tbl *conntrack.Table, res conntrack.Resolver, client conntrack.Addr, port uint16, pac conntrack.Addr) *flow {
	return newFlow(tb, tbl, res, ep(client, port), ep(pac, 1723))
}

// pacFlow is a server inside reached through a port-forward by an outside client.
func pacFlow(tb testing.TB, tbl *conntrack.Table, res conntrack.Resolver, server, client conntrack.Addr, port uint16) *flow {
	return newFlow(tb, tbl, res, ep(server, 1723), ep(client, port))
}

func (f *flow) advance(d time.Duration) { f.now += int64(d) }

// segment sends one segment from end dir and returns its payload as the
// table left it.
func (f *flow) segment(dir int, syn, fin, rst bool, payload []byte) []byte {
	f.tb.Helper()
	p := append([]byte(nil), payload...)
	ack := f.next[1-dir]
	if f.ackLag[dir] != nil {
		ack = *f.ackLag[dir]
	}
	s := &conntrack.Segment{Src: f.ends[dir], Dst: f.ends[1-dir], Seq: f.next[dir],
		Ack: ack, SYN: syn, FIN: fin, RST: rst, ACK: f.syn[1-dir], Payload: p}
	r := f.tbl.Control(s, f.now, f.res)
	f.last = r
	if !f.noCheck {
		f.check(dir, payload, p, r)
	}
	if syn {
		f.syn[dir] = true
		f.next[dir]++
	}
	f.next[dir] += uint32(len(payload))
	if fin {
		f.next[dir]++
	}
	return p
}

// check verifies what every segment's result must satisfy: the direction,
// the Modified flag, and an RFC 1624 sum that turns the old payload's
// checksum into the new one's.
func (f *flow) check(dir int, before, after []byte, r conntrack.ControlResult) {
	f.tb.Helper()
	if !r.Tracked {
		return
	}
	if r.Outbound != (dir == dirOut) {
		f.tb.Errorf("segment from %v: Outbound = %v", f.ends[dir], r.Outbound)
	}
	changed := string(before) != string(after)
	if r.Modified != changed {
		f.tb.Errorf("Modified = %v, payload changed = %v", r.Modified, changed)
	}
	if len(before) != len(after) {
		f.tb.Fatalf("payload length changed")
	}
	if got, want := fold(onesSum(before)+r.Sum), fold(onesSum(after)); !sameOnes(got, want) {
		f.tb.Errorf("checksum sum: old+Sum = %#04x, new = %#04x", got, want)
	}
}

// onesSum and fold: the RFC 1071 sum (alg/hdr), over the whole payload.
func onesSum(b []byte) uint32 { return hdr.Sum(0, b) }

var fold = hdr.Fold

// sameOnes compares one's complement numbers (0x0000 and 0xFFFF are both zero).
func sameOnes(a, b uint16) bool {
	if a == 0xFFFF {
		a = 0
	}
	if b == 0xFFFF {
		b = 0
	}
	return a == b
}

// send sends payload from end dir, cut into segments at the given offsets,
// and returns the bytes as they leave the gateway.
func (f *flow) send(dir int, payload []byte, cuts ...int) []byte {
	f.tb.Helper()
	var out []byte
	prev := 0
	for _, c := range append(cuts, len(payload)) {
		out = append(out, f.segment(dir, false, false, false, payload[prev:c])...)
		prev = c
	}
	return out
}

// resend sends payload again from end dir starting at sequence number seq
// (a retransmission) without moving the end's position.
func (f *flow) resend(dir int, seq uint32, payload []byte) []byte {
	f.tb.Helper()
	p := append([]byte(nil), payload...)
	s := &conntrack.Segment{Src: f.ends[dir], Dst: f.ends[1-dir], Seq: seq,
		Ack: f.next[1-dir], ACK: true, Payload: p}
	f.last = f.tbl.Control(s, f.now, f.res)
	return p
}

// open does the TCP handshake, opened by end opener.
func (f *flow) open(opener int) {
	f.tb.Helper()
	f.segment(opener, true, false, false, nil)
	f.segment(1-opener, true, false, false, nil)
	f.segment(opener, false, false, false, nil) // the final ACK
}

// start opens the connection and exchanges SCCRQ/SCCRP, the PNS starting.
func (f *flow) start() {
	f.tb.Helper()
	pns := dirOut
	if f.ends[dirOut].Port == 1723 {
		pns = dirIn
	}
	f.open(pns)
	f.send(pns, sccrq())
	f.send(1-pns, sccrp())
}

func (f *flow) fin(dir int) { f.tb.Helper(); f.segment(dir, false, true, false, nil) }
func (f *flow) rst(dir int) { f.tb.Helper(); f.segment(dir, false, false, true, nil) }

// pnsCall sets up a call from an inside PNS: OCRQ out, OCRP (result 1)
// in. It returns the outer Call ID and checks the restored Peer Call ID.
func (f *flow) pnsCall(insideID, pacID uint16) uint16 {
	f.tb.Helper()
	out := f.send(dirOut, ocrq(insideID))
	outer := u16(out, 12)
	in := f.send(dirIn, ocrp(pacID, outer, 1))
	if got := u16(in, 14); got != insideID {
		f.tb.Fatalf("OCRP Peer Call ID restored to %#04x, want %#04x", got, insideID)
	}
	if in[16] != 1 {
		f.tb.Fatalf("OCRP result rewritten to %d", in[16])
	}
	return outer
}

// callRow is a call as the admin socket shows it (cmd/pptpgw/admin.CallView
// without the JSON), so that tests read like its output.
type callRow struct {
	ID           string
	State        string
	Role         string
	InsideAddr   string
	InsideCallID uint16
	PublicAddr   string
	OuterCallID  uint16
	PeerAddr     string
	PeerCallID   uint16
	Created      time.Time
	LastSeen     time.Time
	PacketsIn    uint64
	PacketsOut   uint64
	BytesIn      uint64
	BytesOut     uint64
	PickedUp     bool
	Auth         string
	MPPE         string
}

func rowOf(c conntrack.CallInfo) callRow {
	st := c.State.String()
	if c.State == conntrack.StateRefused {
		st = "closing"
	}
	return callRow{ID: c.ID(), State: st, Role: c.Role.String(),
		InsideAddr: c.Inside.String(), InsideCallID: c.InsideID,
		PublicAddr: c.Public.String(), OuterCallID: c.OuterID,
		PeerAddr: c.Peer.String(), PeerCallID: c.PeerID,
		Created: time.Unix(0, c.Created).UTC(), LastSeen: time.Unix(0, c.LastSeen).UTC(),
		PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut, BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		PickedUp: c.PickedUp, Auth: c.Auth.String(), MPPE: c.MPPE}
}

// rows is tbl.Calls() as rows. It checks the table's indexes first, so
// that every test that looks at the calls checks them too.
func rows(tbl *conntrack.Table) []callRow {
	if err := tbl.CheckIndex(); err != nil {
		panic("index out of step: " + err.Error())
	}
	var out []callRow
	for _, c := range tbl.Calls() {
		out = append(out, rowOf(c))
	}
	return out
}

// callByID returns the Calls() row named id.
func callByID(tb testing.TB, tbl *conntrack.Table, id string) callRow {
	tb.Helper()
	for _, v := range rows(tbl) {
		if v.ID == id {
			return v
		}
	}
	tb.Fatalf("no call %q in %v", id, callIDs(tbl))
	return callRow{}
}

func callIDs(tbl *conntrack.Table) []string {
	var ids []string
	for _, v := range rows(tbl) {
		ids = append(ids, v.ID)
	}
	sort.Strings(ids)
	return ids
}

func callName(public, peer conntrack.Addr, outer uint16) string {
	return fmt.Sprintf("%s/%s/%d", public, peer, outer)
}

// wantStats checks some counters.
func wantStats(tb testing.TB, tbl *conntrack.Table, want map[string]uint64) {
	tb.Helper()
	got := tbl.Stats()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			tb.Errorf("stats: no key %q", k)
			continue
		}
		if g != v {
			tb.Errorf("stats %s = %d, want %d", k, g, v)
		}
	}
}

// wantEmpty checks that the table holds nothing at all.
func wantEmpty(tb testing.TB, tbl *conntrack.Table) {
	tb.Helper()
	if s := tbl.Sizes(); s != (conntrack.Sizes{}) {
		tb.Errorf("table not empty: %+v", s)
	}
}

func newTable(l conntrack.Limits) *conntrack.Table { return conntrack.New(l, nil) }

// twoPNS is a table with two PNS behind the gateway talking to one PAC:
// a with call 5 up (Peer's Call ID 0x100), b connected with no call.
func twoPNS(tb testing.TB, res *fakeResolver) (tbl *conntrack.Table, a, b *flow) {
	tbl = newTable(conntrack.Limits{})
	a = pnsFlow(tb, tbl, res, cli1, 40001, pac1)
	a.start()
	a.pnsCall(5, 0x100)
	b = pnsFlow(tb, tbl, res, cli2, 40002, pac1)
	b.start()
	return tbl, a, b
}

// nowAt is t0 plus d, as the table's int64 clock.
func nowAt(d time.Duration) int64 { return t0.Add(d).UnixNano() }
