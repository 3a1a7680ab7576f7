// Package bpf is the tc-eBPF GRE fast path (--gre-path bpf, DESIGN.md
// "The GRE fast paths"): one SchedCLS program on the ingress of every
// interface PPTP uses translates the GRE of established calls and
// redirects it straight to the egress device, past conntrack, netfilter
// and the routing slow path, like an nftables flowtable. Everything
// unusual (a miss, GRE v0, IP options, fragments, TTL <= 1, a packet too
// big for the egress MTU, an unresolved neighbour) passes unchanged to the
// stack, where the nf_tables maps or the NFQUEUE rules take it.
//
// The program is written with cilium/ebpf's asm package: no clang at build
// time. Calls are keyed like the nf_tables maps (nat/nft), by the
// packet's own saddr . daddr . Call ID, in the call lines (lines.go: one
// cache line a packet) and, for keys whose line is full, a hash map; a
// third map lists the interfaces it is attached to, the only ones it
// redirects to (all Ethernet). The FIB is asked before anything is
// written, so a packet it leaves to the stack is always the packet as it
// arrived.
package bpf

import (
	"encoding/binary"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/alg"
)

// Names in the kernel (at most 15 characters) and under the pin directory.
const (
	ProgName     = "pptpgw_gre"
	MapLineName  = "pptpgw_gre_line"
	MapCallsName = "pptpgw_gre_call"
	MapDevName   = "pptpgw_gre_dev"
	// The maps of versions that kept the directions apart: removed at
	// start, like any pinned map of another shape.
	oldMapInName  = "pptpgw_gre_in"
	oldMapOutName = "pptpgw_gre_out"
)

// maxIfindex bounds the ifindexes the program can be attached to: the
// device map is an array indexed by ifindex, whose lookups the verifier
// inlines (a hash lookup costs the inbound path a few percent).
const maxIfindex = 4096

// Verdicts. A packet the program does not translate goes on with
// TC_ACT_UNSPEC, which is TCX_NEXT under tcx and "next filter" under
// cls_bpf: other tc programs and filters on the interface still see it,
// and at the end of the chain the stack takes it as with TC_ACT_OK
// (TC_ACT_OK would end a tcx chain and skip the legacy clsact filters).
const (
	verdictPass     = -1 // TC_ACT_UNSPEC / TCX_NEXT
	verdictRedirect = 7  // TC_ACT_REDIRECT, what bpf_redirect returns
)

// Frame offsets: Ethernet, a 20-byte IPv4 header, the GRE header.
const (
	offEtherType = 12
	offIP        = 14
	offTOS       = offIP + 1
	offTotLen    = offIP + 2
	offFrag      = offIP + 6
	offTTL       = offIP + 8 // TTL and protocol, one 16-bit word
	offProto     = offIP + 9
	offCsum      = offIP + 10
	offSaddr     = offIP + 12
	offDaddr     = offIP + 16
	offGRE       = offIP + 20
	offCallID    = offGRE + 6
	minFrame     = offGRE + 8
)

// __sk_buff fields (include/uapi/linux/bpf.h).
const (
	skbLen         = 0
	skbPktType     = 4
	skbVLANPresent = 20
	skbIfindex     = 40
	skbData        = 76
	skbDataEnd     = 80
)

// struct bpf_fib_lookup, 64 bytes, on the stack at fpFib.
const (
	fibSize    = 64
	fpFib      = -80
	fibFamily  = 0
	fibL4Proto = 1
	fibTotLen  = 6
	fibIfindex = 8
	fibTOS     = 12
	fibSrc     = 16
	fibDst     = 32
	fibSmac    = 52
	fibDmac    = 58
	fpKey      = -16 // the 12-byte map key
	fpIfindex  = -88 // the ingress interface, then the one the FIB is asked from
	fpLine     = -96 // the key's line
)

// Device map values (struct devInfo in links.go).
const (
	devL3  = 0
	devMAC = 4
)

// GREMask and GREValue select GRE v1 with a key carrying PPP in the first
// 32 bits of the GRE header, whatever its S and A bits: exactly what
// alg.ParseGRE accepts, and the nf_tables rule's match (nat/nft).
const (
	GREMask  = alg.GREMatchMask
	GREValue = alg.GREMatchValue
)

// ne16 and ne32 are the values a native-endian load of these bytes in
// network order gives: the program compares packet words without
// swapping them.
func ne16(v uint16) int32 {
	return int32(binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v)))
}

func ne32(v uint32) int32 {
	return int32(binary.NativeEndian.Uint32(binary.BigEndian.AppendUint32(nil, v)))
}

// imm32 is v as a 32-bit immediate (the ALU32 instructions use its bits).
func imm32(v uint32) int32 { return int32(v) }

// Value offsets (struct value in maps.go).
const (
	valBytes   = 0
	valAddr    = 8
	valCallID  = 12
	valDir     = 14
	valPackets = 16
)

const (
	rCtx  = asm.R6 // the skb
	rVal  = asm.R7 // the map value of this CPU
	rDir  = asm.R8 // 0: inbound, 1: outbound
	rSave = asm.R9
)

// Instructions returns the program for a line map of lines lines (a
// power of two, at least 2). The maps are referenced by name
// (MapLineName, MapCallsName, MapDevName) and resolved at load.
func Instructions(lines uint32) asm.Instructions {
	var p asm.Instructions
	p = append(p, asm.Mov.Reg(rCtx, asm.R1))
	p = append(p, parse()...)
	p = append(p, ingress()...)
	p = append(p, lookup(lineShift(lines))...)
	p = append(p, fibLookup()...)
	p = append(p, rewrite()...)
	p = append(p, count()...)
	return append(p,
		asm.LoadMem(asm.R1, asm.RFP, fpFib+fibIfindex, asm.Word),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, verdictPass).WithSymbol("pass"),
		asm.Return(),
	)
}

// packet loads skb->data into R2 and skb->data_end into R3 and checks
// that the headers are there: needed at the start and again after every
// helper call, which clobbers R1-R5 (and bpf_l3_csum_replace invalidates
// packet pointers).
func packet() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, rCtx, skbData, asm.Word),
		asm.LoadMem(asm.R3, rCtx, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, minFrame),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
	}
}

// parse: an untagged frame to this host, IPv4 without options or
// fragmentation, TTL above 1, GRE v1 carrying PPP; then the key on the
// stack.
func parse() asm.Instructions {
	p := asm.Instructions{
		// A frame with an offloaded VLAN tag is not the stack's to forward
		// on this interface (ingress checks whom it is addressed to).
		asm.LoadMem(asm.R4, rCtx, skbVLANPresent, asm.Word),
		asm.JNE.Imm(asm.R4, 0, "pass"),
		// The Ethernet header is always in the linear part at tc ingress:
		// only IPv4 frames are worth a pull.
		asm.LoadMem(asm.R2, rCtx, skbData, asm.Word),
		asm.LoadMem(asm.R3, rCtx, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, offIP),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offEtherType, asm.Half),
		asm.JNE.Imm32(asm.R4, ne16(0x0800), "pass"),
		// Headers outside the linear part (a bridge or a GRO'd veth hands
		// some frames up that way): pull them in, as the stack would.
		asm.Add.Imm(asm.R2, minFrame),
		asm.JLE.Reg(asm.R2, asm.R3, "linear"),
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Imm(asm.R2, minFrame),
		asm.FnSkbPullData.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
	}
	pk := packet()
	pk[0] = pk[0].WithSymbol("linear")
	p = append(p, pk...)
	return append(p,
		asm.LoadMem(asm.R4, asm.R2, offIP, asm.Byte),
		asm.JNE.Imm(asm.R4, 0x45, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offFrag, asm.Half),
		asm.And.Imm32(asm.R4, ne16(0x3fff)),
		asm.JNE.Imm32(asm.R4, 0, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offProto, asm.Byte),
		asm.JNE.Imm(asm.R4, 47, "pass"),
		// A total length shorter than the headers or longer than the
		// frame: the stack drops and counts it.
		asm.LoadMem(asm.R4, asm.R2, offTotLen, asm.Half),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.JLT.Imm(asm.R4, minFrame-offIP, "pass"),
		asm.Add.Imm(asm.R4, offIP),
		asm.LoadMem(asm.R5, rCtx, skbLen, asm.Word),
		asm.JGT.Reg(asm.R4, asm.R5, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offGRE, asm.Word),
		asm.And.Imm32(asm.R4, ne32(GREMask)),
		asm.JNE.Imm32(asm.R4, ne32(GREValue), "pass"),
		// TTL <= 1: the stack sends the time-exceeded.
		asm.LoadMem(asm.R4, asm.R2, offTTL, asm.Byte),
		asm.JLE.Imm(asm.R4, 1, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offSaddr, asm.Word),
		asm.StoreMem(asm.RFP, fpKey, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R2, offDaddr, asm.Word),
		asm.StoreMem(asm.RFP, fpKey+4, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R2, offCallID, asm.Half),
		asm.StoreMem(asm.RFP, fpKey+8, asm.R4, asm.Half),
		asm.StoreImm(asm.RFP, fpKey+10, 0, asm.Half),
	)
}

// ingress checks the frame is the stack's to route, from the ingress
// interface's entry in the device map: addressed to the interface
// itself, or, on a port of a bridge (whose frames the program sees
// before the bridge and br_netfilter do), to the bridge. The interface
// the FIB is asked from (the bridge for its ports) goes on the stack.
func ingress() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R4, rCtx, skbIfindex, asm.Word),
		asm.StoreMem(asm.RFP, fpIfindex, asm.R4, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(MapDevName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpIfindex),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R4, asm.R0, devL3, asm.Word),
		asm.JEq.Imm(asm.R4, 0, "pass"), // not an interface of ours
		asm.StoreMem(asm.RFP, fpIfindex, asm.R4, asm.Word),
		asm.LoadMem(asm.R5, rCtx, skbPktType, asm.Word),
		asm.JEq.Imm(asm.R5, 0, "lookup"), // PACKET_HOST
		asm.LoadMem(asm.R5, rCtx, skbIfindex, asm.Word),
		asm.JEq.Reg(asm.R4, asm.R5, "pass"), // not a bridge port
		asm.LoadMem(asm.R2, rCtx, skbData, asm.Word),
		asm.LoadMem(asm.R3, rCtx, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, offIP),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 0, asm.Word),
		asm.LoadMem(asm.R5, asm.R0, devMAC, asm.Word),
		asm.JNE.Reg(asm.R4, asm.R5, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 4, asm.Half),
		asm.LoadMem(asm.R5, asm.R0, devMAC+4, asm.Half),
		asm.JNE.Reg(asm.R4, asm.R5, "pass"),
	}
}

// lookup: the key's line, then the spill on a miss there; rVal and
// rDir are set on a hit.
func lookup(shift uint32) asm.Instructions {
	p := asm.Instructions{
		asm.LoadMem(asm.R1, asm.RFP, fpKey, asm.Word).WithSymbol("lookup"),
		asm.LoadMem(asm.R2, asm.RFP, fpKey+4, asm.Word),
		asm.Mul.Imm32(asm.R2, imm32(hashDaddr)),
		asm.Xor.Reg32(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, fpKey+8, asm.Word),
		asm.Mul.Imm32(asm.R2, imm32(hashCallID)),
		asm.Xor.Reg32(asm.R1, asm.R2),
		asm.Mul.Imm32(asm.R1, imm32(hashMix)),
		asm.RSh.Imm32(asm.R1, int32(shift)),
		asm.StoreMem(asm.RFP, fpLine, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(MapLineName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpLine),
		asm.FnMapLookupElem.Call(), // inlined by the verifier for an array
		asm.JEq.Imm(asm.R0, 0, "spill"),
	}
	p = append(p, slotMatch("slot_1")...)
	p = append(p, asm.Ja.Label("slot_hit"),
		asm.Add.Imm(asm.R0, slotSize).WithSymbol("slot_1"))
	p = append(p, slotMatch("spill")...)
	return append(p,
		asm.Mov.Reg(rVal, asm.R0).WithSymbol("slot_hit"),
		// A slot being emptied (lines.go) has its key cleared first and
		// then its address: a packet that still matched passes.
		asm.LoadMem(asm.R4, rVal, valAddr, asm.Word),
		asm.JEq.Imm(asm.R4, 0, "pass"),
		asm.Ja.Label("hit"),
		asm.LoadMapPtr(asm.R1, 0).WithReference(MapCallsName).WithSymbol("spill"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(rVal, asm.R0),
		asm.LoadMem(rDir, rVal, valDir, asm.Byte).WithSymbol("hit"),
	)
}

// slotMatch compares the slot at R0 with the key on the stack, word by
// word; it jumps to miss on a difference.
func slotMatch(miss string) asm.Instructions {
	var p asm.Instructions
	for i := int16(0); i < keySize; i += 4 {
		p = append(p,
			asm.LoadMem(asm.R1, asm.R0, slotKey+i, asm.Word),
			asm.LoadMem(asm.R2, asm.RFP, fpKey+i, asm.Word),
			asm.JNE.Reg(asm.R1, asm.R2, miss))
	}
	return p
}

// fibLookup asks the FIB for the next hop of the packet, with
// its length so that the kernel checks the egress MTU, before anything is
// rewritten: any answer but success leaves the packet to the stack.
func fibLookup() asm.Instructions {
	p := asm.Instructions{asm.Mov.Imm(asm.R1, 0)}
	for off := int16(0); off < fibSize; off += 8 {
		p = append(p, asm.StoreMem(asm.RFP, fpFib+off, asm.R1, asm.DWord))
	}
	p = append(p,
		asm.StoreImm(asm.RFP, fpFib+fibFamily, 2, asm.Byte), // AF_INET
		asm.StoreImm(asm.RFP, fpFib+fibL4Proto, 47, asm.Byte),
	)
	p = append(p, packet()...)
	return append(p,
		asm.LoadMem(asm.R4, asm.R2, offTotLen, asm.Half),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.StoreMem(asm.RFP, fpFib+fibTotLen, asm.R4, asm.Half),
		asm.LoadMem(asm.R4, asm.RFP, fpIfindex, asm.Word),
		asm.StoreMem(asm.RFP, fpFib+fibIfindex, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R2, offTOS, asm.Byte),
		asm.StoreMem(asm.RFP, fpFib+fibTOS, asm.R4, asm.Byte),
		// Routed as the stack routes NAT: inbound after the destination
		// is translated (DNAT comes before routing), outbound with the
		// inside source (SNAT comes after; source policy routing sees the
		// inside host, and the FIB needs nothing from the call's line).
		asm.LoadMem(asm.R4, asm.R2, offSaddr, asm.Word),
		asm.LoadMem(asm.R5, asm.R2, offDaddr, asm.Word),
		asm.JNE.Imm(rDir, 0, "fib_addr"),
		asm.LoadMem(asm.R5, rVal, valAddr, asm.Word), // inbound: to the inside address
		asm.StoreMem(asm.RFP, fpFib+fibSrc, asm.R4, asm.Word).WithSymbol("fib_addr"),
		asm.StoreMem(asm.RFP, fpFib+fibDst, asm.R5, asm.Word),
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpFib),
		asm.Mov.Imm(asm.R3, fibSize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnFibLookup.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"), // BPF_FIB_LKUP_RET_SUCCESS only
		// Only to an interface of ours, known to be Ethernet: a route
		// through a tunnel or PPP device takes the stack.
		asm.LoadMapPtr(asm.R1, 0).WithReference(MapDevName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpFib+fibIfindex),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R4, asm.R0, devL3, asm.Word),
		asm.JEq.Imm(asm.R4, 0, "pass"),
	)
}

// rewrite: TTL, address, Call ID (inbound), MACs. The IPv4 checksum is
// updated incrementally by bpf_l3_csum_replace; GRE has none.
func rewrite() asm.Instructions {
	p := packet()
	p = append(p,
		asm.LoadMem(rSave, asm.R2, offTTL, asm.Half),
		asm.Mov.Reg(asm.R4, rSave),
		asm.Sub.Imm(asm.R4, ne16(0x0100)), // TTL > 1: no borrow into the protocol byte
		asm.StoreMem(asm.R2, offTTL, asm.R4, asm.Half),
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Imm(asm.R2, offCsum),
		asm.Mov.Reg(asm.R3, rSave),
		asm.Mov.Imm(asm.R5, 2),
		asm.FnL3CsumReplace.Call(),
	)
	p = append(p, packet()...)
	p = append(p,
		asm.LoadMem(asm.R4, rVal, valAddr, asm.Word),
		asm.JNE.Imm(rDir, 0, "rw_out"),
		asm.LoadMem(asm.R3, asm.R2, offDaddr, asm.Word),
		asm.StoreMem(asm.R2, offDaddr, asm.R4, asm.Word),
		asm.Ja.Label("rw_csum"),
		asm.LoadMem(asm.R3, asm.R2, offSaddr, asm.Word).WithSymbol("rw_out"),
		asm.StoreMem(asm.R2, offSaddr, asm.R4, asm.Word),
		asm.Mov.Reg(asm.R1, rCtx).WithSymbol("rw_csum"),
		asm.Mov.Imm(asm.R2, offCsum),
		asm.Mov.Imm(asm.R5, 4),
		asm.FnL3CsumReplace.Call(),
	)
	p = append(p, packet()...)
	p = append(p,
		asm.JNE.Imm(rDir, 0, "rw_mac"),
		asm.LoadMem(asm.R4, rVal, valCallID, asm.Half),
		asm.StoreMem(asm.R2, offCallID, asm.R4, asm.Half),
	)
	// Destination MAC then source MAC, from the FIB answer, in 16-bit
	// words (stack accesses must be aligned).
	for i := int16(0); i < 6; i += 2 {
		ins := asm.LoadMem(asm.R4, asm.RFP, fpFib+fibDmac+i, asm.Half)
		if i == 0 {
			ins = ins.WithSymbol("rw_mac")
		}
		p = append(p, ins, asm.StoreMem(asm.R2, i, asm.R4, asm.Half))
	}
	for i := int16(0); i < 6; i += 2 {
		p = append(p,
			asm.LoadMem(asm.R4, asm.RFP, fpFib+fibSmac+i, asm.Half),
			asm.StoreMem(asm.R2, 6+i, asm.R4, asm.Half))
	}
	return p
}

// count adds the packet to the call's counters, atomically (another CPU
// may take a packet of the same direction of the call). Bytes are the
// IPv4 total length, as nf_tables counts them.
func count() asm.Instructions {
	p := asm.Instructions{
		asm.LoadMem(rSave, asm.R2, offTotLen, asm.Half),
		asm.HostTo(asm.BE, rSave, asm.Half),
		asm.Mov.Imm(asm.R1, 1),
	}
	packets := asm.StoreXAdd(rVal, asm.R1, asm.Word)
	packets.Offset = valPackets
	bytes := asm.StoreXAdd(rVal, rSave, asm.DWord)
	bytes.Offset = valBytes
	return append(p, packets, bytes)
}

// collectionSpec is the program and its maps, sized for maxCalls calls
// and pinned by name when pinned is set.
func collectionSpec(maxCalls uint32, pinned bool) *ebpf.CollectionSpec {
	pin := ebpf.PinNone
	if pinned {
		pin = ebpf.PinByName
	}
	lines := lineCount(maxCalls)
	// The spill is preallocated, like Katran's maps: memory is reserved
	// at start, a full map is an explicit error rather than an allocation
	// failure under memory pressure, and an update costs 2-4 times less
	// than with BPF_F_NO_PREALLOC (measured). It can hold every call, for
	// an adversary's keys that all hash to one line.
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			MapLineName: {Name: MapLineName, Type: ebpf.Array, KeySize: 4, ValueSize: lineSize,
				MaxEntries: lines, Flags: unix.BPF_F_MMAPABLE, Pinning: pin},
			MapCallsName: {Name: MapCallsName, Type: ebpf.Hash, KeySize: keySize, ValueSize: valueSize,
				MaxEntries: 2 * maxCalls, Pinning: pin},
			MapDevName: {Name: MapDevName, Type: ebpf.Array, KeySize: 4, ValueSize: devInfoSize, MaxEntries: maxIfindex, Pinning: pin}},
		Programs: map[string]*ebpf.ProgramSpec{ProgName: {
			Name: ProgName, Type: ebpf.SchedCLS, License: "GPL", Instructions: Instructions(lines),
		}},
	}
}
