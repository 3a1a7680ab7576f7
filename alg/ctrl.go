// Package alg is PPTP itself: zero-copy views over control messages and
// enhanced GRE headers, and the per-direction control stream tracker that
// finds Call ID fields in a TCP byte stream. It knows bytes only: no I/O, no
// clock, no call table.
package alg

import "encoding/binary"

// MagicCookie is RFC 2637's "Magic Cookie", at offset 4 of every message.
const MagicCookie = 0x1A2B3C4D

// Offsets in the 12-byte header every control message starts with.
const (
	offLength      = 0 // "Length": whole message, header included
	offPPTPType    = 2 // "PPTP Message Type": 1 = control
	offCookie      = 4 // "Magic Cookie"
	offControlType = 8 // "Control Message Type": 1..15
	offReserved0   = 10

	// HeaderLen is the length of the common header.
	HeaderLen = 12
)

// MsgType is RFC 2637's Control Message Type.
type MsgType uint16

// The 15 control message types.
const (
	SCCRQ    MsgType = 1  // Start-Control-Connection-Request
	SCCRP    MsgType = 2  // Start-Control-Connection-Reply
	StopCCRQ MsgType = 3  // Stop-Control-Connection-Request
	StopCCRP MsgType = 4  // Stop-Control-Connection-Reply
	EchoRQ   MsgType = 5  // Echo-Request
	EchoRP   MsgType = 6  // Echo-Reply
	OCRQ     MsgType = 7  // Outgoing-Call-Request
	OCRP     MsgType = 8  // Outgoing-Call-Reply
	ICRQ     MsgType = 9  // Incoming-Call-Request
	ICRP     MsgType = 10 // Incoming-Call-Reply
	ICCN     MsgType = 11 // Incoming-Call-Connected
	CCRQ     MsgType = 12 // Call-Clear-Request
	CDN      MsgType = 13 // Call-Disconnect-Notify
	WEN      MsgType = 14 // WAN-Error-Notify
	SLI      MsgType = 15 // Set-Link-Info
)

var msgNames = [...]string{"", "SCCRQ", "SCCRP", "StopCCRQ", "StopCCRP", "EchoRQ", "EchoRP",
	"OCRQ", "OCRP", "ICRQ", "ICRP", "ICCN", "CCRQ", "CDN", "WEN", "SLI"}

func (t MsgType) String() string {
	if t >= 1 && int(t) < len(msgNames) {
		return msgNames[t]
	}
	return "type-invalid"
}

// rfcLength is the exact length RFC 2637 gives each message type.
var rfcLength = [...]uint16{0, 156, 156, 16, 16, 16, 20, 168, 32, 220, 24, 28, 16, 148, 40, 24}

// RFCLength returns the RFC 2637 length of type t, or 0 for a type outside 1..15.
func RFCLength(t MsgType) int {
	if t >= 1 && int(t) < len(rfcLength) {
		return int(rfcLength[t])
	}
	return 0
}

// Field offsets in the message bodies (RFC 2637 section 2).
const (
	OffCallID     = 12 // "Call ID" in OCRQ, OCRP, ICRQ, ICRP, CCRQ, CDN; "Peer's Call ID" in ICCN, WEN, SLI
	OffPeerCallID = 14 // "Peer's Call ID" in OCRP, ICRP
	OffResult     = 16 // "Result Code" in OCRP, ICRP (one octet)
	offCDNResult  = 14 // "Result Code" in CDN
	offSCCResult  = 14 // "Result Code" in SCCRP
	offStopResult = 12 // "Result Code" in Stop-Control-Connection-Reply
)

// Result codes that matter to the gateway.
const (
	ResultOK           = 1 // OCRP "Connected", ICRP "Connect"
	ResultGeneralError = 2
)

// FieldKind says whose Call ID a field holds.
type FieldKind uint8

const (
	// NoField: the message carries no Call ID.
	NoField FieldKind = iota
	// OwnCallID is the sender's own Call ID.
	OwnCallID
	// PeerCallID is the receiver's Call ID (what the receiver chose).
	PeerCallID
)

// Fields returns the kinds of the Call ID fields at offsets 12 and 14 of
// message type t (PROTOCOL.md's table). Which end is inside does not matter:
// an own ID travelling out and a peer ID travelling in are the two that a
// NAT translates.
func Fields(t MsgType) (at12, at14 FieldKind) {
	switch t {
	case OCRQ, ICRQ, CCRQ, CDN:
		return OwnCallID, NoField
	case OCRP, ICRP:
		return OwnCallID, PeerCallID
	case ICCN, WEN, SLI:
		return PeerCallID, NoField
	}
	return NoField, NoField
}

// HasResult reports whether type t carries the call Result Code at OffResult.
func HasResult(t MsgType) bool { return t == OCRP || t == ICRP }

// Ctrl is a view over one whole control message. Build it with ParseCtrl;
// its accessors then trust the bytes.
type Ctrl []byte

// ParseCtrl validates the message at the start of b and returns a view of
// exactly its bytes, or a reason why it is not a valid control message.
func ParseCtrl(b []byte) (Ctrl, Reason) {
	if len(b) < HeaderLen {
		return nil, ReasonTruncated
	}
	t, r := checkHeader(b)
	if r != ReasonNone {
		return nil, r
	}
	n := RFCLength(t)
	if len(b) < n {
		return nil, ReasonTruncated
	}
	return Ctrl(b[:n]), ReasonNone
}

// checkHeader validates a complete 12-byte header: cookie, message class,
// type and the type's exact length.
func checkHeader(h []byte) (MsgType, Reason) {
	if binary.BigEndian.Uint32(h[offCookie:]) != MagicCookie {
		return 0, ReasonBadCookie
	}
	if binary.BigEndian.Uint16(h[offPPTPType:]) != 1 {
		return 0, ReasonNotControl
	}
	t := MsgType(binary.BigEndian.Uint16(h[offControlType:]))
	n := RFCLength(t)
	if n == 0 {
		return 0, ReasonBadType
	}
	if int(binary.BigEndian.Uint16(h[offLength:])) != n {
		return 0, ReasonBadLength
	}
	return t, ReasonNone
}

// Length is the "Length" field.
func (c Ctrl) Length() int { return int(binary.BigEndian.Uint16(c[offLength:])) }

// Type is the "Control Message Type".
func (c Ctrl) Type() MsgType { return MsgType(binary.BigEndian.Uint16(c[offControlType:])) }

// CallID is the Call ID field at offset 12; Fields says whose it is.
func (c Ctrl) CallID() uint16 { return binary.BigEndian.Uint16(c[OffCallID:]) }

// SetCallID writes the field at offset 12.
func (c Ctrl) SetCallID(id uint16) { binary.BigEndian.PutUint16(c[OffCallID:], id) }

// PeerCallID is "Peer's Call ID" at offset 14 of OCRP and ICRP.
func (c Ctrl) PeerCallID() uint16 { return binary.BigEndian.Uint16(c[OffPeerCallID:]) }

// SetPeerCallID writes the field at offset 14.
func (c Ctrl) SetPeerCallID(id uint16) { binary.BigEndian.PutUint16(c[OffPeerCallID:], id) }

// Result is the call Result Code of OCRP and ICRP, the connection Result
// Code of SCCRP and Stop-Control-Connection-Reply, the CDN Result Code, and
// 0 for other types.
func (c Ctrl) Result() byte {
	switch c.Type() {
	case OCRP, ICRP:
		return c[OffResult]
	case SCCRP:
		return c[offSCCResult]
	case CDN:
		return c[offCDNResult]
	case StopCCRP:
		return c[offStopResult]
	}
	return 0
}
