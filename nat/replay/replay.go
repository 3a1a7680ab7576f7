// Package replay runs pptpgw's packet path offline over a capture taken on
// the inside of a would-be gateway (DESIGN.md "replay"): it writes the
// outside view the gateway would send and the inside view after the round
// trip, and summarises what happened to every call.
package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat"
)

// Options of a replay.
type Options struct {
	Inside []netip.Prefix
	Public netip.Addr
	Limits conntrack.Limits
}

// CallSummary is one call of the summary.
type CallSummary struct {
	InsideAddr   string `json:"inside_addr"`
	InsideCallID uint16 `json:"inside_call_id"`
	PublicAddr   string `json:"public_addr"`
	OuterCallID  uint16 `json:"outer_call_id"`
	PeerAddr     string `json:"peer_addr"`
	PeerCallID   uint16 `json:"peer_call_id"`
	Outcome      string `json:"outcome"` // set-up, picked-up, dropped
	// Auth and MPPE: what the call's PPP link negotiated in the capture
	// (the admin socket's), e.g. "mschapv2", "128-bit stateless".
	Auth string `json:"auth,omitempty"`
	MPPE string `json:"mppe,omitempty"`
}

// Summary is what `pptpgw replay --json` prints.
type Summary struct {
	PacketsIn  uint64            `json:"packets_in"`
	PacketsOut uint64            `json:"packets_out"`
	Skipped    uint64            `json:"skipped"`
	Dropped    map[string]uint64 `json:"dropped"`
	Calls      []CallSummary     `json:"calls"`
}

// Run replays the capture in, writing --out to out and --lan-out to lanOut
// (either may be nil).
func Run(in io.Reader, out, lanOut io.Writer, opt Options) (*Summary, error) {
	if !opt.Public.Is4() {
		return nil, errors.New("--public-ip: an IPv4 address is required")
	}
	if len(opt.Inside) == 0 {
		return nil, errors.New("--inside: at least one prefix is required")
	}
	pr, err := openCapture(in)
	if err != nil {
		return nil, err
	}
	r := &replayer{opt: opt, public: conntrack.AddrFrom(opt.Public),
		sum: &Summary{Dropped: map[string]uint64{}, Calls: []CallSummary{}}, flows: map[flowKey]*CallSummary{}}
	r.table = conntrack.New(opt.Limits, r)
	r.inv = newInverse(r.table)
	r.engine = nat.NewEngine(r.table, r, nat.Config{})
	r.w = r.engine.NewWorker()
	if r.out, err = newWriter(out); err != nil {
		return nil, err
	}
	if r.lan, err = newWriter(lanOut); err != nil {
		return nil, err
	}
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read packet %d: %w", r.sum.PacketsIn+1, err)
		}
		r.sum.PacketsIn++
		if err := r.packet(pr.LinkType(), data, ci); err != nil {
			return nil, err
		}
	}
	r.finish()
	return r.sum, nil
}

func newWriter(w io.Writer) (*pcapgo.Writer, error) {
	if w == nil {
		return nil, nil
	}
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return pw, nil
}

type flowKey struct {
	inside, peer conntrack.Addr
	id           uint16
	outbound     bool
}

type replayer struct {
	opt    Options
	public conntrack.Addr
	table  *conntrack.Table
	engine *nat.Engine
	w      *nat.Worker
	out    *pcapgo.Writer
	lan    *pcapgo.Writer
	sum    *Summary
	inv    *inverse
	calls  []seenCall
	flows  map[flowKey]*CallSummary // GRE of no call, by flow
	// offload: the checksums the packet being replayed was captured with.
	offload offload
}

func (r *replayer) inside(a conntrack.Addr) bool {
	ip := a.IP()
	for _, p := range r.opt.Inside {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Resolve places a control connection by the --inside prefixes; the
// kernel would keep its ports, so the public endpoint has the inside port.
func (r *replayer) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	in, outside := src, dst
	if !r.inside(src.Addr) {
		in, outside = dst, src
	}
	return conntrack.ConnSpec{Inside: in, Outside: outside,
		Public: conntrack.Endpoint{Addr: r.public, Port: in.Port}}, true
}

// seenCall is a call of the summary: as it came up or was refused, with
// what it learnt later.
type seenCall struct {
	id      string
	refused bool
	c       conntrack.CallInfo
}

// Observer: the summary lists every call that came up or was refused. The
// table calls it after each packet's work, on this goroutine.
func (r *replayer) CallUp(c conntrack.CallInfo) {
	r.calls = append(r.calls, seenCall{id: c.ID(), c: c})
}
func (r *replayer) CallRefused(c conntrack.CallInfo, _ string) {
	r.calls = append(r.calls, seenCall{id: c.ID(), refused: true, c: c})
}

// CallDown keeps what the call learnt while it was up (a picked-up call's
// peer Call ID).
func (r *replayer) CallDown(c conntrack.CallInfo, _ string) { r.update(c) }

// CallEnded remembers calls for the inverse translation (inverse.go).
func (r *replayer) CallEnded(c conntrack.CallInfo) { r.inv.remember(c) }

func (r *replayer) update(c conntrack.CallInfo) {
	id := c.ID()
	for i := len(r.calls) - 1; i >= 0; i-- {
		if s := &r.calls[i]; s.id == id && !s.refused {
			s.c.PeerID = c.PeerID
			s.c.Auth, s.c.MPPE = c.Auth, c.MPPE
			return
		}
	}
}
func (r *replayer) Malformed(conntrack.ConnInfo, string) {}

func (r *replayer) packet(lt layers.LinkType, data []byte, ci gopacket.CaptureInfo) error {
	ip, err := ipv4Of(lt, data)
	if err != nil || !isPPTP(ip) {
		r.sum.Skipped++
		return nil
	}
	ihl := ihlOf(ip)
	if tl := int(binary.BigEndian.Uint16(ip[hdr.IPv4OffTotalLength:])); tl >= ihl && tl < len(ip) {
		ip = ip[:tl]
	}
	src, dst := addrAt(ip, hdr.IPv4OffSrc), addrAt(ip, hdr.IPv4OffDst)
	if r.inside(src) == r.inside(dst) {
		r.sum.Skipped++
		return nil
	}
	pkt := append([]byte(nil), ip...)
	r.offload = fillChecksums(pkt)
	now := ci.Timestamp.UnixNano()
	r.table.Expire(now)
	tcp := pkt[hdr.IPv4OffProtocol] == hdr.ProtoTCP
	if r.inside(src) {
		return r.outbound(pkt, tcp, ci, now)
	}
	return r.inbound(pkt, tcp, ci, now)
}

// isPPTP: IPv4 TCP to or from port 1723, or IPv4 GRE version 1.
func isPPTP(ip []byte) bool {
	if len(ip) < hdr.IPv4MinLen || hdr.IPv4Version(ip) != 4 {
		return false
	}
	ihl := ihlOf(ip)
	if ihl < hdr.IPv4MinLen || len(ip) < ihl+4 {
		return false
	}
	l4 := ip[ihl:]
	switch ip[hdr.IPv4OffProtocol] {
	case hdr.ProtoTCP:
		if len(l4) < hdr.TCPMinLen || hdr.TCPHeaderLen(l4) < hdr.TCPMinLen || hdr.TCPHeaderLen(l4) > len(l4) {
			return false
		}
		return binary.BigEndian.Uint16(l4[hdr.TCPOffSrcPort:]) == nat.PPTPPort ||
			binary.BigEndian.Uint16(l4[hdr.TCPOffDstPort:]) == nat.PPTPPort
	case hdr.ProtoGRE:
		return l4[hdr.GREOffVer]&hdr.GREVerMask == hdr.GREVersionPPTP
	}
	return false
}

// outbound: the inside view goes through the engine, then the kernel's
// SNAT (source address to the public one) that the live gateway leaves to
// the kernel; --lan-out gets it mapped back.
func (r *replayer) outbound(pkt []byte, tcp bool, ci gopacket.CaptureInfo, now int64) error {
	inside := addrAt(pkt, hdr.IPv4OffSrc)
	hook := nat.HookGREOut
	if tcp {
		hook = nat.HookControl
	}
	v, reason := r.w.Process(pkt, hook, now)
	if v == nat.Drop {
		r.drop(reason, pkt, inside, true)
		return nil
	}
	if tcp {
		setAddrTCP(pkt, hdr.IPv4OffSrc, r.public)
	}
	if err := r.write(r.out, ci, pkt); err != nil {
		return err
	}
	// Map back: the kernel's un-SNAT, then the inverse of the Call ID rewrite.
	back := append([]byte(nil), pkt...)
	if tcp {
		setAddrTCP(back, hdr.IPv4OffSrc, inside)
		seg := segmentOf(back)
		if res, ok := r.inv.insideView(&seg); ok && res.Modified {
			fixTCPChecksum(back, res.Sum)
		}
	} else {
		g, _ := alg.ParseGRE(back[ihlOf(back):])
		if a, ok := r.inv.insideFor(addrAt(back, hdr.IPv4OffSrc), addrAt(back, hdr.IPv4OffDst), g.CallID()); ok {
			setAddrIP(back, hdr.IPv4OffSrc, a)
		}
	}
	r.offload.restore(back)
	return r.write(r.lan, ci, back)
}

// inbound: first what the peer sent to the public address, then the
// kernel's un-DNAT and the engine.
func (r *replayer) inbound(pkt []byte, tcp bool, ci gopacket.CaptureInfo, now int64) error {
	inside, peer := addrAt(pkt, hdr.IPv4OffDst), addrAt(pkt, hdr.IPv4OffSrc)
	if tcp {
		seg := segmentOf(pkt)
		if res, ok := r.inv.peerView(&seg); ok && res.Modified {
			fixTCPChecksum(pkt, res.Sum)
		}
		setAddrTCP(pkt, hdr.IPv4OffDst, r.public)
	} else {
		g, _ := alg.ParseGRE(pkt[ihlOf(pkt):])
		public := r.public
		if pub, outer, ok := r.inv.outerFor(inside, peer, g.CallID()); ok {
			g.SetCallID(outer)
			public = pub
		}
		setAddrIP(pkt, hdr.IPv4OffDst, public)
	}
	lan := append([]byte(nil), pkt...)
	hook := nat.HookGREIn
	if tcp {
		setAddrTCP(lan, hdr.IPv4OffDst, inside)
		hook = nat.HookControl
	}
	v, reason := r.w.Process(lan, hook, now)
	if v == nat.Drop {
		// Dropped packets are in neither file.
		r.drop(reason, lan, inside, false)
		return nil
	}
	if err := r.write(r.out, ci, pkt); err != nil {
		return err
	}
	r.offload.restore(lan)
	return r.write(r.lan, ci, lan)
}

func (r *replayer) write(w *pcapgo.Writer, ci gopacket.CaptureInfo, pkt []byte) error {
	if w == r.out {
		r.sum.PacketsOut++
	}
	if w == nil {
		return nil
	}
	ci.CaptureLength, ci.Length = len(pkt), len(pkt)
	ci.InterfaceIndex = 0
	if err := w.WritePacket(ci, pkt); err != nil {
		return fmt.Errorf("write packet: %w", err)
	}
	return nil
}

// drop counts a dropped packet; GRE of no call is listed per flow.
func (r *replayer) drop(reason nat.Reason, pkt []byte, inside conntrack.Addr, outbound bool) {
	r.sum.Dropped[reason.String()]++
	if pkt[hdr.IPv4OffProtocol] != hdr.ProtoGRE {
		return
	}
	g, rs := alg.ParseGRE(pkt[ihlOf(pkt):])
	if rs != alg.ReasonNone {
		return
	}
	k := flowKey{inside: inside, peer: addrAt(pkt, hdr.IPv4OffDst), id: g.CallID(), outbound: outbound}
	if !outbound {
		k.peer = addrAt(pkt, hdr.IPv4OffSrc)
	}
	if r.flows[k] != nil {
		return
	}
	cs := &CallSummary{InsideAddr: k.inside.String(), PublicAddr: r.public.String(), PeerAddr: k.peer.String(), Outcome: "dropped"}
	if outbound {
		cs.PeerCallID = k.id
	} else {
		cs.InsideCallID, cs.OuterCallID = k.id, k.id
	}
	r.flows[k] = cs
}

func (r *replayer) finish() {
	for _, c := range r.table.Calls() {
		r.update(c)
	}
	for _, s := range r.calls {
		c := &s.c
		out := "set-up"
		switch {
		case s.refused:
			out = "dropped"
		case c.PickedUp:
			out = "picked-up"
		}
		r.sum.Calls = append(r.sum.Calls, CallSummary{InsideAddr: c.Inside.String(), InsideCallID: c.InsideID,
			PublicAddr: c.Public.String(), OuterCallID: c.OuterID, PeerAddr: c.Peer.String(), PeerCallID: c.PeerID, Outcome: out,
			Auth: c.Auth.String(), MPPE: c.MPPE})
	}
	flows := make([]*CallSummary, 0, len(r.flows))
	for _, f := range r.flows {
		flows = append(flows, f)
	}
	sort.Slice(flows, func(i, j int) bool {
		a, b := flows[i], flows[j]
		if a.InsideAddr != b.InsideAddr {
			return a.InsideAddr < b.InsideAddr
		}
		if a.PeerAddr != b.PeerAddr {
			return a.PeerAddr < b.PeerAddr
		}
		if a.PeerCallID != b.PeerCallID {
			return a.PeerCallID < b.PeerCallID
		}
		return a.OuterCallID < b.OuterCallID
	})
	for _, f := range flows {
		r.sum.Calls = append(r.sum.Calls, *f)
	}
}
