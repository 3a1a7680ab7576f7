package ctnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// fakeTable answers Get like the kernel: the query tuple (original if
// given, else reply) is matched against both directions of every entry.
type fakeTable struct {
	flows   []conntrack.Flow
	queries int
	err     error
}

func (f *fakeTable) Get(q conntrack.Flow) (conntrack.Flow, error) {
	f.queries++
	if f.err != nil {
		return conntrack.Flow{}, f.err
	}
	t := q.TupleOrig
	if !t.IP.SourceAddress.IsValid() {
		t = q.TupleReply
	}
	for _, fl := range f.flows {
		if t == fl.TupleOrig || t == fl.TupleReply {
			return fl, nil
		}
	}
	// What ti-mo/netfilter returns: a wrapped *netlink.OpError.
	return conntrack.Flow{}, fmt.Errorf("netfilter query: %w", &netlink.OpError{Op: "receive", Err: unix.ENOENT})
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func flow(os, od, rs, rd, helper string) conntrack.Flow {
	f := conntrack.Flow{TupleOrig: tcpTuple(ap(os), ap(od)), TupleReply: tcpTuple(ap(rs), ap(rd))}
	f.Helper.Name = helper
	return f
}

func TestLookup(t *testing.T) {
	table := &fakeTable{flows: []conntrack.Flow{
		// MASQUERADE: inside client 192.168.1.10 dials out.
		flow("192.168.1.10:40000", "203.0.113.5:1723", "203.0.113.5:1723", "198.51.100.1:61000", ""),
		// Port-forward 198.51.100.1:1723 -> inside server 192.168.1.20.
		flow("203.0.113.5:50000", "198.51.100.1:1723", "192.168.1.20:1723", "203.0.113.5:50000", ""),
		// Routed, not translated, kernel helper attached.
		flow("192.168.2.7:41000", "203.0.113.9:1723", "203.0.113.9:1723", "192.168.2.7:41000", "pptp"),
	}}
	tests := []struct {
		name                  string
		src, dst              string
		snat, dnat, insideOrg bool
		inside, public, peer  string
		helper                string
	}{
		{"snat outbound", "192.168.1.10:40000", "203.0.113.5:1723", true, false, true,
			"192.168.1.10:40000", "198.51.100.1:61000", "203.0.113.5:1723", ""},
		{"snat inbound after un-NAT", "203.0.113.5:1723", "192.168.1.10:40000", true, false, true,
			"192.168.1.10:40000", "198.51.100.1:61000", "203.0.113.5:1723", ""},
		{"dnat inbound after DNAT", "203.0.113.5:50000", "192.168.1.20:1723", false, true, false,
			"192.168.1.20:1723", "198.51.100.1:1723", "203.0.113.5:50000", ""},
		{"dnat outbound before un-DNAT", "192.168.1.20:1723", "203.0.113.5:50000", false, true, false,
			"192.168.1.20:1723", "198.51.100.1:1723", "203.0.113.5:50000", ""},
		{"no nat", "203.0.113.9:1723", "192.168.2.7:41000", false, false, false,
			"invalid AddrPort", "invalid AddrPort", "invalid AddrPort", "pptp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Lookup(table, ap(tt.src), ap(tt.dst))
			if err != nil || !n.Found {
				t.Fatalf("Lookup = %+v, %v", n, err)
			}
			if n.SNAT != tt.snat || n.DNAT != tt.dnat || n.InsideIsOriginator() != tt.insideOrg ||
				n.Translated() != (tt.snat || tt.dnat) {
				t.Errorf("SNAT %v DNAT %v insideOrig %v, want %v %v %v", n.SNAT, n.DNAT, n.InsideIsOriginator(), tt.snat, tt.dnat, tt.insideOrg)
			}
			if n.Inside().String() != tt.inside || n.Public().String() != tt.public || n.Peer().String() != tt.peer {
				t.Errorf("inside %s public %s peer %s, want %s %s %s", n.Inside(), n.Public(), n.Peer(), tt.inside, tt.public, tt.peer)
			}
			if n.Helper != tt.helper {
				t.Errorf("Helper = %q, want %q", n.Helper, tt.helper)
			}
		})
	}
}

func TestLookupNotFound(t *testing.T) {
	table := &fakeTable{}
	n, err := Lookup(table, ap("192.168.1.10:1"), ap("203.0.113.5:1723"))
	if err != nil || n.Found {
		t.Errorf("Lookup of unknown = %+v, %v; want not found, nil", n, err)
	}
	if table.queries != 2 {
		t.Errorf("%d queries, want 2 (original, then reply)", table.queries)
	}
}

func TestLookupErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Lookup(&fakeTable{err: boom}, ap("192.168.1.10:1"), ap("203.0.113.5:1723")); !errors.Is(err, boom) {
		t.Errorf("error = %v, want wrapping boom", err)
	}
	if _, err := Lookup(&fakeTable{}, ap("[2001:db8::1]:1"), ap("[2001:db8::2]:1723")); err == nil {
		t.Error("IPv6 lookup accepted")
	}
}

// A reply that is not the connection asked about is not trusted.
func TestLookupMismatch(t *testing.T) {
	other := flow("192.168.9.9:1", "203.0.113.1:1723", "203.0.113.1:1723", "198.51.100.1:2", "")
	n, err := Lookup(fakeGetter(func(conntrack.Flow) (conntrack.Flow, error) { return other, nil }),
		ap("192.168.1.10:1"), ap("203.0.113.5:1723"))
	if err != nil || n.Found {
		t.Errorf("Lookup = %+v, %v; want not found", n, err)
	}
}

type fakeGetter func(conntrack.Flow) (conntrack.Flow, error)

func (f fakeGetter) Get(q conntrack.Flow) (conntrack.Flow, error) { return f(q) }

// The request encoding and the reply decoding agree (the kernel's flow
// message carries the same tuple attributes as the query).
func TestDecodeReply(t *testing.T) {
	want := flow("192.168.1.10:40000", "203.0.113.5:1723", "203.0.113.5:1723", "198.51.100.1:61000", "")
	m, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: 0, Family: netfilter.ProtoIPv4,
	}, []netfilter.Attribute{tupleAttr(ctaTupleOrig, want.TupleOrig), tupleAttr(ctaTupleReply, want.TupleReply)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReply(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.TupleOrig != want.TupleOrig || got.TupleReply != want.TupleReply {
		t.Errorf("decoded %v / %v, want %v / %v", got.TupleOrig, got.TupleReply, want.TupleOrig, want.TupleReply)
	}

	errMsg := netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}
	code := -int32(unix.ENOENT)
	binary.NativeEndian.PutUint32(errMsg.Data, uint32(code))
	if _, err := decodeReply(errMsg); !errors.Is(err, unix.ENOENT) {
		t.Errorf("error reply: %v, want ENOENT", err)
	}
	if _, err := decodeReply(netlink.Message{Header: netlink.Header{Type: netlink.Error}}); err == nil {
		t.Error("short error message accepted")
	}
}
