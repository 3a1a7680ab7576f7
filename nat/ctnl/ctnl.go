// Package ctnl asks the kernel's conntrack table, over ctnetlink, how the
// kernel translated a PPTP control connection: the public address and
// port MASQUERADE/SNAT chose, or the inside server a port-forward (DNAT)
// leads to. pptpgw queues control packets in mangle FORWARD, where it sees
// the inside view only; the outside view is in the conntrack entry.
//
// Timing: a connection's first SYN reaches mangle FORWARD before the
// kernel has confirmed its conntrack entry (at the end of POSTROUTING,
// which is also where SNAT happens), and ctnetlink does not show
// unconfirmed entries: a Lookup for the first SYN finds nothing, for SNAT
// and DNAT alike. Callers retry on the connection's later packets (the
// SYN-ACK onwards, long before the first PPTP message) and cache the
// answer once found, once per control connection.
package ctnl

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Getter answers single-entry conntrack queries: *Conn, or a fake in
// tests. (*conntrack.Conn from ti-mo has the same method but hangs on
// entries that exist with mdlayher/netlink v1.11.2: see Conn.)
type Getter interface {
	Get(conntrack.Flow) (conntrack.Flow, error)
}

// NAT is a control connection's conntrack entry, reduced to addresses.
// The original tuple is the connection as its opener sent it; the reply
// tuple is how the answers travel, after translation.
type NAT struct {
	// Found is false when the kernel has no (confirmed) entry yet.
	Found              bool
	OrigSrc, OrigDst   netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
	// SNAT: the opener's address was translated (orig src != reply dst):
	// MASQUERADE or SNAT of a client behind the gateway.
	SNAT bool
	// DNAT: the destination was translated (orig dst != reply src): a
	// port-forward to a server behind the gateway.
	DNAT bool
	// Helper is the name of the conntrack helper attached ("pptp" when
	// the kernel's own PPTP helper is active on this connection), or "".
	Helper string
}

// Translated reports whether the kernel rewrites this connection at all.
// A connection it does not translate gives identity calls (DESIGN.md §2).
func (n NAT) Translated() bool { return n.SNAT || n.DNAT }

// InsideIsOriginator reports whether the end behind the gateway opened the
// connection: SNAT without DNAT (a PNS inside dialling out). With DNAT the
// opener is outside and the inside end is the port-forward's target.
func (n NAT) InsideIsOriginator() bool { return n.SNAT && !n.DNAT }

// Inside returns the end behind the gateway as it sees itself: the opener
// under SNAT, the DNAT target (reply source) under DNAT. Zero when the
// connection is not translated.
func (n NAT) Inside() netip.AddrPort {
	switch {
	case n.DNAT:
		return n.ReplySrc
	case n.SNAT:
		return n.OrigSrc
	}
	return netip.AddrPort{}
}

// Public returns the gateway's address and port for this connection as the
// outside end sees it: the reply tuple's destination under SNAT, the
// original destination under DNAT. Zero when not translated.
func (n NAT) Public() netip.AddrPort {
	switch {
	case n.DNAT:
		return n.OrigDst
	case n.SNAT:
		return n.ReplyDst
	}
	return netip.AddrPort{}
}

// Peer returns the outside end as the gateway's inside sees it: the
// original destination under SNAT, the reply destination under DNAT (the
// opener, or the address a hairpin SNAT gave it).
func (n NAT) Peer() netip.AddrPort {
	switch {
	case n.DNAT:
		return n.ReplyDst
	case n.SNAT:
		return n.OrigDst
	}
	return netip.AddrPort{}
}

// Lookup finds the TCP connection of a packet seen in mangle FORWARD, in
// either direction, src and dst being its source and destination. Such a
// packet carries the original tuple (SNAT, opener to server), the inverse
// of it (SNAT, the answer after un-NAT), the reply tuple (DNAT, the server
// answering) or its inverse (DNAT, the opener's packet after DNAT). The
// kernel's lookup (nf_conntrack_find_get) matches a tuple against both
// directions of every entry, so two queries cover the four cases: the
// tuple as an original one, then its inverse as a reply one.
//
// A connection the kernel does not know is Found=false with a nil error.
func Lookup(conn Getter, src, dst netip.AddrPort) (NAT, error) {
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return NAT{}, fmt.Errorf("lookup %s -> %s: IPv4 only", src, dst)
	}
	f, err := conn.Get(conntrack.Flow{TupleOrig: tcpTuple(src, dst)})
	if errors.Is(err, unix.ENOENT) {
		f, err = conn.Get(conntrack.Flow{TupleReply: tcpTuple(dst, src)})
	}
	if errors.Is(err, unix.ENOENT) {
		return NAT{}, nil
	}
	if err != nil {
		return NAT{}, fmt.Errorf("conntrack get tcp %s -> %s: %w", src, dst, err)
	}
	n := fromFlow(f)
	if !n.matches(src, dst) {
		// Not the connection asked for: treat as unknown rather than
		// learning someone else's public address.
		return NAT{}, nil
	}
	return n, nil
}

func tcpTuple(src, dst netip.AddrPort) conntrack.Tuple {
	return conntrack.Tuple{
		IP: conntrack.IPTuple{SourceAddress: src.Addr(), DestinationAddress: dst.Addr()},
		Proto: conntrack.ProtoTuple{
			Protocol: unix.IPPROTO_TCP, SourcePort: src.Port(), DestinationPort: dst.Port(),
		},
	}
}

func fromFlow(f conntrack.Flow) NAT {
	ap := func(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a.Unmap(), p) }
	n := NAT{
		Found:    true,
		OrigSrc:  ap(f.TupleOrig.IP.SourceAddress, f.TupleOrig.Proto.SourcePort),
		OrigDst:  ap(f.TupleOrig.IP.DestinationAddress, f.TupleOrig.Proto.DestinationPort),
		ReplySrc: ap(f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort),
		ReplyDst: ap(f.TupleReply.IP.DestinationAddress, f.TupleReply.Proto.DestinationPort),
		Helper:   HelperOf(f),
	}
	n.SNAT = n.OrigSrc != n.ReplyDst
	n.DNAT = n.OrigDst != n.ReplySrc
	return n
}

// matches reports whether a packet src -> dst belongs to this entry in
// one of the four forms Lookup accepts.
func (n NAT) matches(src, dst netip.AddrPort) bool {
	return (src == n.OrigSrc && dst == n.OrigDst) || (src == n.OrigDst && dst == n.OrigSrc) ||
		(src == n.ReplySrc && dst == n.ReplyDst) || (src == n.ReplyDst && dst == n.ReplySrc)
}

// HelperOf returns the name of the conntrack helper attached to a flow
// ("pptp" for the kernel's own PPTP ALG), or "" when none is.
func HelperOf(f conntrack.Flow) string { return f.Helper.Name }
