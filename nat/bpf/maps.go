package bpf

import (
	"encoding/binary"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// key is a map key as the program builds it from the packet: saddr,
// daddr, Call ID (network order), two bytes of zero padding.
type key [keySize]byte

const (
	keySize   = 12
	valueSize = 24
)

// value is what a call's entry holds, in a line slot (slots.go) or in
// the spill map. Addr is the address to write (inbound: the inside
// address, the destination; outbound: the public address, the source),
// CallID the inbound Call ID to write (network order; zero outbound), Dir
// which of the two the entry is: one table holds both directions, so a
// packet costs one lookup whichever way it goes. The counters are the
// program's (atomic adds: one entry per direction of a call, which one
// CPU mostly handles); Packets is 32 bits so that a slot with its key
// fits half a cache line: the daemon takes a slot's counters with atomic
// swaps to zero at each read, or, on 32-bit hosts and in the spill, reads
// them cumulative and carries the wraps. There is
// no last-seen time: the reconciler stamps new packets when it reads
// them, which the idle timeouts need no finer than that.
type value struct {
	Byts    uint64
	Addr    [4]byte
	CallID  [2]byte
	Dir     uint8
	Pad     uint8
	Packets uint32
	Pad2    uint32
}

// Dir values.
const (
	dirIn  = 0
	dirOut = 1
)

func makeKey(src, dst conntrack.Addr, callID uint16) key {
	var k key
	copy(k[0:4], src[:])
	copy(k[4:8], dst[:])
	binary.BigEndian.PutUint16(k[8:], callID)
	return k
}

// inKey and outKey are m's keys in the inbound and outbound maps.
func inKey(m conntrack.GREMap) key  { return makeKey(m.Peer, m.Public, m.OuterID) }
func outKey(m conntrack.GREMap) key { return makeKey(m.Inside, m.Peer, m.PeerID) }

// inValue and outValue are m's mappings, counters zero.
func inValue(m conntrack.GREMap) value {
	v := value{Addr: m.Inside, Dir: dirIn}
	binary.BigEndian.PutUint16(v.CallID[:], m.InsideID)
	return v
}
func outValue(m conntrack.GREMap) value { return value{Addr: m.Public, Dir: dirOut} }

// sameMapping says whether two values translate alike (counters aside).
func sameMapping(a, b value) bool { return a.Addr == b.Addr && a.CallID == b.CallID && a.Dir == b.Dir }

func (k key) fields() (src, dst conntrack.Addr, callID uint16) {
	copy(src[:], k[0:4])
	copy(dst[:], k[4:8])
	return src, dst, binary.BigEndian.Uint16(k[8:])
}

func (k key) in() fastpath.InKey {
	src, dst, id := k.fields()
	return fastpath.InKey{Peer: src, Public: dst, OuterID: id}
}

func (k key) out() fastpath.OutKey {
	src, dst, id := k.fields()
	return fastpath.OutKey{Inside: src, Peer: dst, PeerID: id}
}
