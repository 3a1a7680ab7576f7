package alg

import "encoding/binary"

// Enhanced GRE (RFC 2637 section 4.1) header fields.
const (
	greFlagsByte    = 0 // C R K S s Recur(3)
	greVerByte      = 1 // A Flags(4) Ver(3)
	greOffProto     = 2
	greOffPayLen    = 4 // "Payload Length": high half of the key
	greOffCallID    = 6 // "Call ID": low half of the key, the receiver's Call ID
	greMinLen       = 8
	greBitK         = 0x20
	greBitS         = 0x10
	greBitA         = 0x80
	greProtoPPP     = 0x880B
	greByte0Allowed = greBitK | greBitS // C, R, s and Recur must be 0, K must be 1
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
	if b[greVerByte]&0x07 != 1 {
		return nil, ReasonGREVersion
	}
	if b[greFlagsByte]&^greByte0Allowed != 0 || b[greFlagsByte]&greBitK == 0 || b[greVerByte]&0x78 != 0 {
		return nil, ReasonGREFlags
	}
	if binary.BigEndian.Uint16(b[greOffProto:]) != greProtoPPP {
		return nil, ReasonGREProto
	}
	g := GRE(b)
	if len(b) < g.HeaderLen() {
		return nil, ReasonTruncated
	}
	return g, ReasonNone
}

// HasSeq reports the S bit: a Sequence Number is present.
func (g GRE) HasSeq() bool { return g[greFlagsByte]&greBitS != 0 }

// HasAck reports the A bit: an Acknowledgment Number is present.
func (g GRE) HasAck() bool { return g[greVerByte]&greBitA != 0 }

// HeaderLen is 8, 12 or 16 bytes depending on S and A.
func (g GRE) HeaderLen() int {
	n := greMinLen
	if g.HasSeq() {
		n += 4
	}
	if g.HasAck() {
		n += 4
	}
	return n
}

// CallID is the receiver's Call ID (the low half of the key).
func (g GRE) CallID() uint16 { return binary.BigEndian.Uint16(g[greOffCallID:]) }

// SetCallID rewrites the Call ID. GRE v1 has no checksum, so nothing else changes.
func (g GRE) SetCallID(id uint16) { binary.BigEndian.PutUint16(g[greOffCallID:], id) }

// PayloadLength is the "Payload Length" field (0 on ack-only packets).
func (g GRE) PayloadLength() int { return int(binary.BigEndian.Uint16(g[greOffPayLen:])) }

// Seq is the Sequence Number; only meaningful when HasSeq.
func (g GRE) Seq() uint32 { return binary.BigEndian.Uint32(g[greMinLen:]) }

// Ack is the Acknowledgment Number; only meaningful when HasAck.
func (g GRE) Ack() uint32 {
	off := greMinLen
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
