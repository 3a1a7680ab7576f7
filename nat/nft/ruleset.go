// Package nft is the kernel GRE fast path (--gre-path kernel, DESIGN.md
// "The data path"): pptpgw's own nf_tables table `ip pptpgw`, programmed
// over netlink with google/nftables, whose maps the daemon fills from the
// call table so that the kernel translates the GRE of known calls at
// forwarding speed. GRE that misses the maps goes on to the iptables
// NFQUEUE rules, so a call is never lost while its elements are on their
// way.
//
// The rule shape (checked with the nft CLI on this kernel, LAB.md "A GRE
// fast path in the kernel works"), as `nft list table ip pptpgw` prints it:
//
//	map in_addr   { type ipv4_addr . ipv4_addr . inet_service : ipv4_addr; counter }
//	              peer . public . outer Call ID -> inside address
//	map in_callid { type ipv4_addr . ipv4_addr . inet_service : inet_service }
//	              peer . public . outer Call ID -> inside Call ID
//	set out_calls { type ipv4_addr . ipv4_addr . inet_service; counter }
//	              inside . peer . peer Call ID
//	map out_addr  { type ipv4_addr . ipv4_addr . inet_service : ipv4_addr }
//	              inside . peer . peer Call ID -> public address
//	chain gre_in  { type filter hook prerouting priority -301   (before iptables' raw table)
//	  ip protocol gre @th,0,32 & 0xef7fffff == 0x2001880b
//	  ip daddr set ip saddr . ip daddr . @th,48,16 map @in_addr
//	  @th,48,16 set ip saddr . ip daddr . @th,48,16 map @in_callid
//	  notrack meta mark set meta mark | MARK accept
//	  ip protocol gre @th,0,32 & 0xef7fffff == 0x2001880b
//	  ip saddr . ip daddr . @th,48,16 @out_calls notrack meta mark set meta mark | MARK }
//	chain gre_out { type filter hook postrouting priority -151  (before iptables' mangle table)
//	  ip protocol gre @th,0,32 & 0xef7fffff == 0x2001880b
//	  ip saddr set ip saddr . ip daddr . @th,48,16 map @out_addr }
//
// The GRE match (alg.GREMatchMask: C=0, R=0, K=1, s=0, Recur=0, no flags, version 1, protocol 0x880B) ignores the S
// and A bits, so data, ack-only and seq-less packets all hit. Every map is
// keyed by the packet's own saddr . daddr . Call ID; the inbound key holds
// the public address, so only GRE to the call's own public address is
// translated (no route lookup needed). The inbound value is split in two
// maps because the nft CLI cannot print a payload write of half a map
// value. The inbound destination is written before the Call ID: the
// second lookup takes the original daddr from the register. A lookup that
// misses ends the rule, so packets of no known call get no mark and reach
// the queues. The Call IDs are typed inet_service only so that `nft list`
// prints them in decimal. The mark also lets translated packets skip
// pptpgw's iptables chains (nat/rules: the jumps test it).
package nft

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/alg"
)

// Names in the kernel.
const (
	TableName   = "pptpgw"
	MapInAddr   = "in_addr"
	MapInCallID = "in_callid"
	SetOutCalls = "out_calls"
	MapOutAddr  = "out_addr"
	ChainIn     = "gre_in"
	ChainOut    = "gre_out"
	// PriorityIn runs just before iptables' raw table (-300), PriorityOut
	// just before its mangle table (-150).
	PriorityIn  = -301
	PriorityOut = -151
)

// greMask and greValue select GRE v1 carrying PPP (alg.GREMatchMask and
// alg.GREMatchValue) in the first 32 bits of
// the GRE header, whatever its S and A bits.
var (
	greMask  = binary.BigEndian.AppendUint32(nil, alg.GREMatchMask)
	greValue = binary.BigEndian.AppendUint32(nil, alg.GREMatchValue)
)

type ruleset struct {
	table                          *nftables.Table
	inAddr, inID, outCalls, outAdr *nftables.Set
	markBit                        uint32
}

func newRuleset(markBit uint32) *ruleset {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	key := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetService)
	return &ruleset{
		table: t,
		inAddr: &nftables.Set{Table: t, Name: MapInAddr, IsMap: true, Concatenation: true, Counter: true, KeyType: key,
			DataType: nftables.TypeIPAddr, KeyByteOrder: binaryutil.BigEndian},
		inID: &nftables.Set{Table: t, Name: MapInCallID, IsMap: true, Concatenation: true, KeyType: key,
			DataType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian},
		// Each lookup counts: the counter is on the set the prerouting
		// rule tests, the map postrouting reads has none.
		outCalls: &nftables.Set{Table: t, Name: SetOutCalls, Concatenation: true, Counter: true, KeyType: key,
			KeyByteOrder: binaryutil.BigEndian},
		outAdr: &nftables.Set{Table: t, Name: MapOutAddr, IsMap: true, Concatenation: true, KeyType: key,
			DataType: nftables.TypeIPAddr, KeyByteOrder: binaryutil.BigEndian},
		markBit: markBit,
	}
}

// maps are the four maps, in the order the backend's pending elements use.
func (r *ruleset) maps() [4]*nftables.Set {
	return [4]*nftables.Set{r.inAddr, r.inID, r.outCalls, r.outAdr}
}

// create queues, on c, the replacement of any table of that name by an
// empty one with the maps and chains: add (so that the delete finds one),
// delete, add, in one transaction.
func (r *ruleset) create(c *nftables.Conn) error {
	c.AddTable(r.table)
	c.DelTable(r.table)
	c.AddTable(r.table)
	for _, s := range r.maps() {
		s.ID = 0 // a new set in this batch
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Name: ChainIn, Table: r.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(PriorityIn), Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: ChainOut, Table: r.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(PriorityOut), Policy: &accept})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: in, Exprs: r.inExprs()})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: in, Exprs: r.outMarkExprs()})
	c.AddRule(&nftables.Rule{Table: r.table, Chain: out, Exprs: r.outExprs()})
	return nil
}

// Registers: 1 is the 16-byte NFT_REG_1, whose 32-bit parts are 8, 9, 10
// and 11; a concatenated key fills them in order.
const (
	reg1   = 1
	reg32b = 9  // the second 32-bit word of register 1
	reg32c = 10 // the third
)

func (r *ruleset) inExprs() []expr.Any {
	e := isGREv1()
	e = append(e, loadKey()...)
	e = append(e,
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: r.inAddr.Name, SetID: r.inAddr.ID},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg1, Base: expr.PayloadBaseNetworkHeader,
			Offset: 16, Len: 4, CsumType: expr.CsumTypeInet, CsumOffset: 10},
	)
	e = append(e,
		// The lookup overwrote word 8 only, and the packet's daddr is the
		// inside address now: reload just the saddr.
		loadKey()[0],
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: r.inID.Name, SetID: r.inID.ID},
		// GRE v1 has no checksum: the Call ID is written as it is.
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg1, Base: expr.PayloadBaseTransportHeader,
			Offset: 6, Len: 2},
		// Untracked like every PPTP GRE packet (the iptables NOTRACK
		// chain, which marked packets skip).
		&expr.Notrack{},
	)
	e = append(e, r.setMark()...)
	// Done with this chain (the outbound rule would only miss).
	return append(e, &expr.Verdict{Kind: expr.VerdictAccept})
}

// outMarkExprs: the first half of the outbound translation, in
// prerouting: a packet of a mapped call leaves conntrack and takes the
// mark there, so that it skips pptpgw's iptables chains as inbound
// packets do (the source can only be rewritten after routing: a local
// source address arriving on the inside is a martian).
func (r *ruleset) outMarkExprs() []expr.Any {
	e := isGREv1()
	e = append(e, loadKey()...)
	e = append(e,
		&expr.Lookup{SourceRegister: reg1, SetName: r.outCalls.Name, SetID: r.outCalls.ID},
		&expr.Notrack{},
	)
	return append(e, r.setMark()...)
}

// outExprs: the second half, in postrouting. An inbound packet translated
// before (marked too) misses the map: its key is peer . inside . inside
// Call ID.
func (r *ruleset) outExprs() []expr.Any {
	e := isGREv1()
	e = append(e, loadKey()...)
	return append(e,
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: r.outAdr.Name, SetID: r.outAdr.ID},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg1, Base: expr.PayloadBaseNetworkHeader,
			Offset: 12, Len: 4, CsumType: expr.CsumTypeInet, CsumOffset: 10},
	)
}

// isGREv1: ip protocol gre, then the masked first word of the GRE header.
func isGREv1() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_GRE}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: greMask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: greValue},
	}
}

// loadKey: ip saddr . ip daddr . @th,48,16 (one load for both addresses
// would do, but then `nft list` prints @nh,96,64).
func loadKey() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg32b, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: reg32c, Base: expr.PayloadBaseTransportHeader, Offset: 6, Len: 2},
	}
}

// setMark: meta mark set meta mark | markBit.
func (r *ruleset) setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^r.markBit), Xor: binaryutil.NativeEndian.PutUint32(r.markBit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// Keys and values as the kernel holds them: concatenated fields padded to
// 4 bytes, network byte order. Both maps' keys are saddr . daddr . Call ID
// of the packet they translate.
type key = [12]byte

func greKey(src, dst [4]byte, id uint16) key {
	var k key
	copy(k[:], src[:])
	copy(k[4:], dst[:])
	binary.BigEndian.PutUint16(k[8:], id)
	return k
}

func greKeyBytes(src, dst [4]byte, id uint16) []byte {
	k := greKey(src, dst, id)
	return k[:]
}

func callID(id uint16) []byte { return binary.BigEndian.AppendUint16(nil, id) }
