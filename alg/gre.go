package alg

import (
	"encoding/binary"

	"github.com/pptpgw/pptpgw/alg/hdr"
)

// greByte0Allowed: of C R K S s Recur(3), only K and S may be set, and K must be.
const greByte0Allowed = hdr.GREBitK | hdr.GREBitS

// GREMatchMask and GREMatchValue select, in the first 32 bits of a GRE
// header, exactly the headers ParseGRE accepts whatever their S and A bits
// (C=0 R=0 K=1 s=0 Recur=0, flags 0, version 1, protocol PPP): the match of
// the kernel fast paths (nat/nft, nat/bpf), which then translate data,
// ack-only and seq-less packets alike and leave every other GRE to the
// queues, which drop it by reason.
const (
	GREMatchMask  = 0xef7fffff
	GREMatchValue = 0x2001880b
)

// GRE is a view over an enhanced GRE v1 header and its payload. Build it
// with ParseGRE; its accessors then trust the bytes.
type GRE []byte

// ParseGRE validates an enhanced GRE header at the start of b (the IP
// payload) and returns a view over b, or why it is not PPTP's GRE.
func ParseGRE(b []byte) (GRE, Reason) {
	if len(b) < 4 {
		return nil, ReasonTruncated
	}
	if b[hdr.GREOffVer]&hdr.GREVerMask != hdr.GREVersionPPTP {
		return nil, ReasonGREVersion
	}
	if b[hdr.GREOffFlags]&^greByte0Allowed != 0 || b[hdr.GREOffFlags]&hdr.GREBitK == 0 || b[hdr.GREOffVer]&hdr.GREFlagsMask != 0 {
		return nil, ReasonGREFlags
	}
	if binary.BigEndian.Uint16(b[hdr.GREOffProtocol:]) != hdr.GREProtoPPP {
		return nil, ReasonGREProto
	}
	g := GRE(b)
	if len(b) < g.HeaderLen() {
		return nil, ReasonTruncated
	}
	return g, ReasonNone
}

// HasSeq reports the S bit: a Sequence Number is present.
func (g GRE) HasSeq() bool { return g[hdr.GREOffFlags]&hdr.GREBitS != 0 }

// HasAck reports the A bit: an Acknowledgment Number is present.
func (g GRE) HasAck() bool { return g[hdr.GREOffVer]&hdr.GREBitA != 0 }

// HeaderLen is 8, 12 or 16 bytes depending on S and A.
func (g GRE) HeaderLen() int {
	n := hdr.GREMinLen
	if g.HasSeq() {
		n += 4
	}
	if g.HasAck() {
		n += 4
	}
	return n
}

// CallID is the receiver's Call ID (the low half of the key).
func (g GRE) CallID() uint16 { return binary.BigEndian.Uint16(g[hdr.GREOffCallID:]) }

// SetCallID rewrites the Call ID. GRE v1 has no checksum, so nothing else changes.
func (g GRE) SetCallID(id uint16) { binary.BigEndian.PutUint16(g[hdr.GREOffCallID:], id) }

// PayloadLength is the "Payload Length" field (0 on ack-only packets).
func (g GRE) PayloadLength() int { return int(binary.BigEndian.Uint16(g[hdr.GREOffPayloadLen:])) }

// Seq is the Sequence Number; only meaningful when HasSeq.
func (g GRE) Seq() uint32 { return binary.BigEndian.Uint32(g[hdr.GREMinLen:]) }

// Ack is the Acknowledgment Number; only meaningful when HasAck.
func (g GRE) Ack() uint32 {
	off := hdr.GREMinLen
	if g.HasSeq() {
		off += 4
	}
	return binary.BigEndian.Uint32(g[off:])
}

// Payload is the PPP frame after the header, cut to Payload Length when
// the packet carries more (padding).
func (g GRE) Payload() []byte {
	p := g[g.HeaderLen():]
	if n := g.PayloadLength(); n < len(p) {
		p = p[:n]
	}
	return p
}
