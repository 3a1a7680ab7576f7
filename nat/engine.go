// Package nat is pptpgw's packet path: it decodes IPv4 packets with
// gopacket, hands control segments to the call table's stream trackers and
// GRE to its mappings, rewrites the packet in place with incremental
// checksums (RFC 1624) and returns a verdict. It does no I/O; the Linux glue
// lives in sub-packages.
package nat

import (
	"sync/atomic"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/alg/hdr"
	"github.com/pptpgw/pptpgw/conntrack"
)

// PPTPPort is the control connection's TCP port.
const PPTPPort = 1723

// Hook says where a packet was queued, which is what tells a GRE packet's
// direction (DESIGN.md "The data path").
type Hook uint8

const (
	// HookControl: TCP 1723 in mangle FORWARD (the inside view).
	HookControl Hook = iota
	// HookGREIn: GRE to a local address, raw PREROUTING (before routing).
	HookGREIn
	// HookGREOut: forwarded GRE, mangle POSTROUTING (after routing).
	HookGREOut
	// HookLocalOut: GRE the router itself sends.
	HookLocalOut
	// HookControlOut: TCP 1723 the router itself sends (mangle OUTPUT):
	// a control connection of its own, whose source is the local end.
	HookControlOut
	// HookControlIn: TCP 1723 to the router itself (mangle INPUT): the
	// destination is the local end.
	HookControlIn
)

// localResolver places a control connection of the router's own: the
// local end is inside and public, nothing is NATed (ConnSpec.Local). It is
// a zero-size value, so passing it as a Resolver allocates nothing.
type localResolver struct{ dstLocal bool }

func (r localResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if r.dstLocal {
		src, dst = dst, src
	}
	return conntrack.ConnSpec{Inside: src, Outside: dst, Public: src, Local: true}, true
}

// Config is the packet path's policy.
type Config struct {
	// LocalGREAccept lets GRE v1 for no known call through to and from a
	// PPTP endpoint on the router itself (--local-gre accept). The
	// router's own calls are tracked without it (HookControlOut/In).
	LocalGREAccept bool
}

// Engine is the shared part of the packet path: the call table, the
// resolver of new control connections and the per-reason counters. Each
// queue goroutine uses its own Worker.
type Engine struct {
	Table    *conntrack.Table
	Resolver conntrack.Resolver
	cfg      atomic.Pointer[Config]
	counts   [reasonCount]atomic.Uint64
	packets  atomic.Uint64
}

// NewEngine returns an engine over table t.
func NewEngine(t *conntrack.Table, r conntrack.Resolver, cfg Config) *Engine {
	e := &Engine{Table: t, Resolver: r}
	e.cfg.Store(&cfg)
	return e
}

// SetConfig changes the policy (SIGHUP).
func (e *Engine) SetConfig(cfg Config) { e.cfg.Store(&cfg) }

// Count returns how many packets got reason r.
func (e *Engine) Count(r Reason) uint64 { return e.counts[r].Load() }

// Packets returns how many packets the engine has seen.
func (e *Engine) Packets() uint64 { return e.packets.Load() }

// Worker decodes and rewrites packets for one goroutine: its decoder is
// reused, so the packet path allocates nothing.
type Worker struct {
	e       *Engine
	parser  *gopacket.DecodingLayerParser
	ip4     layers.IPv4
	tcp     layers.TCP
	icmp    layers.ICMPv4
	payload gopacket.Payload
	decoded []gopacket.LayerType
	seg     conntrack.Segment
}

// NewWorker returns a worker for one goroutine.
func (e *Engine) NewWorker() *Worker {
	w := &Worker{e: e, decoded: make([]gopacket.LayerType, 0, 4)}
	// No GRE layer: the parser stops after IPv4 (IgnoreUnsupported) and
	// greV1 reads the GRE header in place with alg.ParseGRE, which checks
	// what PPTP needs; gopacket's GRE decode would be the same work twice.
	w.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &w.ip4, &w.tcp, &w.icmp, &w.payload)
	w.parser.IgnoreUnsupported = true
	return w
}

// Process decides on one IPv4 packet queued at hook; pkt is rewritten in
// place. now is the time in Unix nanoseconds.
func (w *Worker) Process(pkt []byte, hook Hook, now int64) (Verdict, Reason) {
	v, r := w.process(pkt, hook, now)
	w.e.counts[r].Add(1)
	w.e.packets.Add(1)
	return v, r
}

func (w *Worker) process(pkt []byte, hook Hook, now int64) (Verdict, Reason) {
	if len(pkt) < hdr.IPv4MinLen || hdr.IPv4Version(pkt) != 4 {
		return Accept, ReasonNotIPv4
	}
	err := w.parser.DecodeLayers(pkt, &w.decoded)
	if len(w.decoded) == 0 {
		return Accept, ReasonTruncated
	}
	ip := &w.ip4
	if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
		return Accept, ReasonFragment
	}
	switch ip.Protocol {
	case layers.IPProtocolTCP:
		if len(w.decoded) < 2 || err != nil {
			return Accept, ReasonTruncated
		}
		if w.tcp.SrcPort != PPTPPort && w.tcp.DstPort != PPTPPort {
			return Accept, ReasonNotPPTP
		}
		return w.control(hook, now)
	case layers.IPProtocolGRE:
		return w.greV1(pkt, hook, now)
	case layers.IPProtocolICMPv4:
		if hook == HookGREIn {
			return w.icmpIn() // icmp.go: errors quoting translated GRE
		}
	}
	return Accept, ReasonNotPPTP
}

func addr4(b []byte) conntrack.Addr { return conntrack.Addr(b) }

// control runs a TCP 1723 segment through the call table. A segment of the
// router's own (OUTPUT, INPUT) is placed by where it was queued; a
// forwarded one by the kernel's conntrack (the engine's Resolver).
func (w *Worker) control(hook Hook, now int64) (Verdict, Reason) {
	t := &w.tcp
	ip := w.ip4.Contents
	s := &w.seg
	s.Src = conntrack.Endpoint{Addr: addr4(ip[hdr.IPv4OffSrc : hdr.IPv4OffSrc+4]), Port: uint16(t.SrcPort)}
	s.Dst = conntrack.Endpoint{Addr: addr4(ip[hdr.IPv4OffDst : hdr.IPv4OffDst+4]), Port: uint16(t.DstPort)}
	s.Seq, s.Ack = t.Seq, t.Ack
	s.SYN, s.FIN, s.RST, s.ACK = t.SYN, t.FIN, t.RST, t.ACK
	s.Payload = t.Payload
	var res conntrack.ControlResult
	switch hook {
	case HookControlOut:
		res = w.e.Table.Control(s, now, localResolver{})
	case HookControlIn:
		res = w.e.Table.Control(s, now, localResolver{dstLocal: true})
	default:
		res = w.e.Table.Control(s, now, w.e.Resolver)
	}
	s.Payload = nil
	switch {
	case res.Denied:
		return Drop, ReasonControlDenied // --allow-inside, --allow-peer
	case !res.Tracked:
		return Accept, ReasonControlUntracked
	case res.Drop:
		return Drop, ReasonControlGap
	case res.Modified:
		hdr.UpdateAt(t.Contents[hdr.TCPOffChecksum:hdr.TCPOffChecksum+2], res.Sum)
		return AcceptModified, ReasonControl
	}
	return Accept, ReasonControl
}

// greV1 translates PPTP's GRE.
func (w *Worker) greV1(pkt []byte, hook Hook, now int64) (Verdict, Reason) {
	g, r := alg.ParseGRE(w.ip4.Payload)
	if r != alg.ReasonNone {
		return greRejected(w.ip4.Payload, r, hook)
	}
	ip := w.ip4.Contents
	src, dst := addr4(ip[hdr.IPv4OffSrc:hdr.IPv4OffSrc+4]), addr4(ip[hdr.IPv4OffDst:hdr.IPv4OffDst+4])
	n := len(w.ip4.Payload)
	tbl := w.e.Table
	switch hook {
	case HookLocalOut:
		return w.localOut(src, dst, g, n, now)
	case HookGREIn:
		inside, id, v := tbl.GREInPPP(src, dst, g.CallID(), g.Payload(), n, now) // peeks at PPP while negotiating
		switch v {
		case conntrack.GREForward:
			g.SetCallID(id)
			setAddr(ip, hdr.IPv4OffDst, inside)
			return AcceptModified, ReasonGREIn
		case conntrack.GRERefused:
			return Drop, ReasonRefusedCall
		}
		if w.e.cfg.Load().LocalGREAccept {
			return Accept, ReasonGRELocal
		}
		return Drop, ReasonUnknownCall
	default:
		public, v := tbl.GREOutPPP(src, dst, g.CallID(), g.Payload(), n, now) // peeks at PPP while negotiating
		switch v {
		case conntrack.GREForward:
			setAddr(ip, hdr.IPv4OffSrc, public)
			return AcceptModified, ReasonGREOut
		case conntrack.GREIdentity:
			return Accept, ReasonGREIdentity
		case conntrack.GRERefused:
			return Drop, ReasonRefusedCall
		}
		return Drop, ReasonUnknownCall
	}
}

// localOut decides on GRE v1 the router itself sends: the GRE of its own
// calls (ConnSpec.Local: nothing to rewrite, public is the source) passes,
// as does any with --local-gre accept; the rest is for no known call.
func (w *Worker) localOut(src, dst conntrack.Addr, g alg.GRE, n int, now int64) (Verdict, Reason) {
	_, v := w.e.Table.GREOutPPP(src, dst, g.CallID(), g.Payload(), n, now)
	switch {
	case v == conntrack.GREForward || v == conntrack.GREIdentity:
		return Accept, ReasonGREOut
	case v == conntrack.GRERefused:
		return Drop, ReasonRefusedCall
	case w.e.cfg.Load().LocalGREAccept:
		return Accept, ReasonGRELocal
	}
	return Drop, ReasonUnknownCall
}

// greRejected decides on GRE that is not PPTP's. Towards a local address
// (every GRE is queued there) only version 0 may reach the router's stack,
// for ip_gre tunnels; the rest is dropped by its reason, so that none of
// it makes the stack answer the sender. GRE forwarded elsewhere is only
// queued when it looks like PPTP's, so other versions pass as before.
func greRejected(b []byte, r alg.Reason, hook Hook) (Verdict, Reason) {
	switch r {
	case alg.ReasonGREVersion:
		if hook == HookGREIn && b[1]&0x07 != 0 {
			return Drop, ReasonGREVersion
		}
		return Accept, ReasonNotPPTPGRE
	case alg.ReasonGREProto:
		if hook == HookGREIn {
			return Drop, ReasonGREProtocol
		}
		return Accept, ReasonNotPPTPGRE
	}
	return Drop, ReasonMalformedGRE // bad flags, or a header cut short
}

// setAddr writes an IPv4 address at off of IPv4 header ip and updates the
// header checksum incrementally; an unchanged address leaves it as it is.
func setAddr(ip []byte, off int, a conntrack.Addr) {
	if conntrack.Addr(ip[off:off+4]) == a {
		return
	}
	hdr.SetIPv4Addr(ip, off, a)
}
