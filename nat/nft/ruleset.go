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
//	map gre_in_daddr  { type ipv4_addr . inet_service : ipv4_addr; counter }     peer . outer Call ID -> inside address
//	map gre_in_callid { type ipv4_addr . inet_service : inet_service }           peer . outer Call ID -> inside Call ID
//	map gre_out_saddr { type ipv4_addr . ipv4_addr . inet_service : ipv4_addr; counter }  inside . peer . peer Call ID -> public
//	chain gre_in  { type filter hook prerouting priority -301   (before iptables' raw table)
//	  ip protocol gre @th,0,32 & 0xe007ffff == 0x2001880b fib daddr type local notrack
//	  ip daddr set ip saddr . @th,48,16 map @gre_in_daddr
//	  @th,48,16 set ip saddr . @th,48,16 map @gre_in_callid
//	  meta mark set meta mark | MARK }
//	chain gre_out { type filter hook postrouting priority -151  (before iptables' mangle table)
//	  ip protocol gre meta mark & MARK == 0 @th,0,32 & 0xe007ffff == 0x2001880b
//	  ip saddr set ip saddr . ip daddr . @th,48,16 map @gre_out_saddr
//	  meta mark set meta mark | MARK }
//
// The GRE match (C=0, R=0, K=1, version 1, protocol 0x880B) ignores the S
// and A bits, so data, ack-only and seq-less packets all hit. The inbound
// destination is written before the Call ID: the second lookup reads the
// original Call ID. A lookup that misses ends the rule, so packets of no
// known call get no mark and reach the queues. The Call IDs are typed
// inet_service only so that `nft list` prints them in decimal.
package nft

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names in the kernel.
const (
	TableName   = "pptpgw"
	MapInDaddr  = "gre_in_daddr"
	MapInCallID = "gre_in_callid"
	MapOutSaddr = "gre_out_saddr"
	ChainIn     = "gre_in"
	ChainOut    = "gre_out"
	// PriorityIn runs just before iptables' raw table (-300), PriorityOut
	// just before its mangle table (-150).
	PriorityIn  = -301
	PriorityOut = -151
)

// greMask and greValue select GRE v1 carrying PPP in the first 32 bits of
// the GRE header, whatever its S and A bits.
var (
	greMask  = []byte{0xe0, 0x07, 0xff, 0xff}
	greValue = []byte{0x20, 0x01, 0x88, 0x0b}
)

type ruleset struct {
	table                *nftables.Table
	inDaddr, inID, outSa *nftables.Set
	markBit              uint32
}

func newRuleset(markBit uint32) *ruleset {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	key2 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	key3 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetService)
	return &ruleset{
		table: t,
		inDaddr: &nftables.Set{Table: t, Name: MapInDaddr, IsMap: true, Concatenation: true, Counter: true,
			KeyType: key2, DataType: nftables.TypeIPAddr, KeyByteOrder: binaryutil.BigEndian},
		inID: &nftables.Set{Table: t, Name: MapInCallID, IsMap: true, Concatenation: true,
			KeyType: key2, DataType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian},
		outSa: &nftables.Set{Table: t, Name: MapOutSaddr, IsMap: true, Concatenation: true, Counter: true,
			KeyType: key3, DataType: nftables.TypeIPAddr, KeyByteOrder: binaryutil.BigEndian},
		markBit: markBit,
	}
}

// create queues, on c, the replacement of any table of that name by an
// empty one with the maps and chains: add (so that the delete finds one),
// delete, add, in one transaction.
func (r *ruleset) create(c *nftables.Conn) error {
	c.AddTable(r.table)
	c.DelTable(r.table)
	c.AddTable(r.table)
	for _, s := range []*nftables.Set{r.inDaddr, r.inID, r.outSa} {
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
	c.AddRule(&nftables.Rule{Table: r.table, Chain: out, Exprs: r.outExprs()})
	return nil
}

func (r *ruleset) inExprs() []expr.Any {
	var e []expr.Any
	e = append(e, isGREv1()...)
	e = append(e,
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Notrack{},
	)
	e = append(e, loadInKey()...)
	e = append(e,
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: r.inDaddr.Name, SetID: r.inDaddr.ID},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader,
			Offset: 16, Len: 4, CsumType: expr.CsumTypeInet, CsumOffset: 10, CsumFlags: unix.NFT_PAYLOAD_L4CSUM_PSEUDOHDR},
	)
	e = append(e, loadInKey()...)
	e = append(e,
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: r.inID.Name, SetID: r.inID.ID},
		// GRE v1 has no checksum: the Call ID is written as it is.
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseTransportHeader,
			Offset: 6, Len: 2},
	)
	return append(e, r.setMark()...)
}

func (r *ruleset) outExprs() []expr.Any {
	var e []expr.Any
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_GRE}},
		// Already translated inbound (here or by the queue): leave it.
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(r.markBit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
	)
	e = append(e, isGREv1()[2:]...)
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 6, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: r.outSa.Name, SetID: r.outSa.ID},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader,
			Offset: 12, Len: 4, CsumType: expr.CsumTypeInet, CsumOffset: 10, CsumFlags: unix.NFT_PAYLOAD_L4CSUM_PSEUDOHDR},
	)
	return append(e, r.setMark()...)
}

// isGREv1: ip protocol gre, then the masked first word of the GRE header.
func isGREv1() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_GRE}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: greMask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: greValue},
	}
}

// loadInKey: ip saddr . @th,48,16 in registers 1 and 9.
func loadInKey() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 6, Len: 2},
	}
}

// setMark: meta mark set meta mark | markBit.
func (r *ruleset) setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^r.markBit), Xor: binaryutil.NativeEndian.PutUint32(r.markBit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// Keys and values as the kernel holds them: concatenated fields padded to
// 4 bytes, network byte order.
func inKey(peer [4]byte, outer uint16) []byte {
	b := make([]byte, 8)
	copy(b, peer[:])
	binary.BigEndian.PutUint16(b[4:], outer)
	return b
}

func outKey(inside, peer [4]byte, peerID uint16) []byte {
	b := make([]byte, 12)
	copy(b, inside[:])
	copy(b[4:], peer[:])
	binary.BigEndian.PutUint16(b[8:], peerID)
	return b
}

func callID(id uint16) []byte { return binary.BigEndian.AppendUint16(nil, id) }
