// Package pptpmsg builds and reads PPTP control messages (RFC 2637; the
// offsets are those of PROTOCOL.md): the one message builder of pptpgw's
// tests (alg's golden bytes aside) and of the lab's own PNS and PAC
// programs (e2e/cmd/pptpcli, e2e/cmd/pptpload, e2e/cmd/pacsim). It is test
// tooling, not the daemon's parser (alg/ is), and imports nothing of
// pptpgw, so that alg's own tests can use it: Msg builds any type at its
// RFC length, the New* functions the messages the lab sends, with
// plausible values in the fields nobody checks.
package pptpmsg

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Control message types.
const (
	SCCRQ    = 1
	SCCRP    = 2
	StopCCRQ = 3
	StopCCRP = 4
	EchoRQ   = 5
	EchoRP   = 6
	OCRQ     = 7
	OCRP     = 8
	ICRQ     = 9
	ICRP     = 10
	ICCN     = 11
	CCRQ     = 12
	CDN      = 13
	WEN      = 14
	SLI      = 15
)

const (
	Cookie    = 0x1A2B3C4D
	HeaderLen = 12
	// MaxLen bounds what Read accepts: the longest message (ICRQ) is 220
	// bytes, so anything far above is a broken stream, not a message.
	MaxLen = 512
)

// Names are the message types' usual short names, for logs.
var Names = map[uint16]string{
	SCCRQ: "SCCRQ", SCCRP: "SCCRP", StopCCRQ: "StopCCRQ", StopCCRP: "StopCCRP", EchoRQ: "Echo-Request",
	EchoRP: "Echo-Reply", OCRQ: "OCRQ", OCRP: "OCRP", ICRQ: "ICRQ", ICRP: "ICRP", ICCN: "ICCN",
	CCRQ: "CCRQ", CDN: "CDN", WEN: "WEN", SLI: "SLI",
}

// Name returns the type's name, or "type N" for an unknown one.
func Name(typ uint16) string {
	if n, ok := Names[typ]; ok {
		return n
	}
	return fmt.Sprintf("type %d", typ)
}

// lengths are the RFC 2637 lengths of the control message types 1..15.
var lengths = [...]int{SCCRQ: 156, SCCRP: 156, StopCCRQ: 16, StopCCRP: 16, EchoRQ: 16, EchoRP: 20,
	OCRQ: 168, OCRP: 32, ICRQ: 220, ICRP: 24, ICCN: 28, CCRQ: 16, CDN: 148, WEN: 40, SLI: 24}

// Len is the RFC 2637 length of control message type typ (0 for a type
// outside 1..15).
func Len(typ uint16) int {
	if int(typ) >= len(lengths) {
		return 0
	}
	return lengths[typ]
}

// Msg returns a control message of type typ (1..15) at its RFC length,
// header filled in, the rest zero but for fields: 16-bit values written
// from offset 12 on (Call ID, then Peer Call ID or Call Serial Number for
// most types).
func Msg(typ uint16, fields ...uint16) []byte {
	m := New(typ, Len(typ))
	for i, f := range fields {
		binary.BigEndian.PutUint16(m[HeaderLen+2*i:], f)
	}
	return m
}

// New returns a zeroed control message of the given type and total length
// with the header (length, message type 1, cookie, control type) filled in.
func New(typ uint16, length int) []byte {
	m := make([]byte, length)
	binary.BigEndian.PutUint16(m[0:], uint16(length))
	binary.BigEndian.PutUint16(m[2:], 1) // control message
	binary.BigEndian.PutUint32(m[4:], Cookie)
	binary.BigEndian.PutUint16(m[8:], typ)
	return m
}

// NewSCCRQ is the PNS's Start-Control-Connection-Request.
func NewSCCRQ(hostname string) []byte {
	m := New(SCCRQ, 156)
	binary.BigEndian.PutUint16(m[12:], 0x0100) // protocol version 1.0
	binary.BigEndian.PutUint32(m[16:], 1)      // framing: async
	binary.BigEndian.PutUint32(m[20:], 1)      // bearer: analog
	binary.BigEndian.PutUint16(m[24:], 0)      // max channels
	binary.BigEndian.PutUint16(m[26:], 1)      // firmware revision
	copy(m[28:92], hostname)
	copy(m[92:156], "pptpgw-lab")
	return m
}

// NewSCCRP is the PAC's Start-Control-Connection-Reply, result 1 (OK).
func NewSCCRP(hostname string) []byte {
	m := New(SCCRP, 156)
	binary.BigEndian.PutUint16(m[12:], 0x0100) // protocol version 1.0
	m[14] = 1                                  // result: OK
	binary.BigEndian.PutUint32(m[16:], 3)      // framing: async and sync
	binary.BigEndian.PutUint32(m[20:], 3)      // bearer: analog and digital
	binary.BigEndian.PutUint16(m[24:], 0xFFFF) // max channels
	binary.BigEndian.PutUint16(m[26:], 1)      // firmware revision
	copy(m[28:92], hostname)
	copy(m[92:156], "pptpgw-lab")
	return m
}

// NewOCRQ is an Outgoing-Call-Request for the PNS's callID.
func NewOCRQ(callID, serial uint16) []byte {
	m := New(OCRQ, 168)
	binary.BigEndian.PutUint16(m[12:], callID)
	binary.BigEndian.PutUint16(m[14:], serial)
	binary.BigEndian.PutUint32(m[16:], 2400)     // minimum bps
	binary.BigEndian.PutUint32(m[20:], 10000000) // maximum bps
	binary.BigEndian.PutUint32(m[24:], 3)        // bearer: any
	binary.BigEndian.PutUint32(m[28:], 3)        // framing: any
	binary.BigEndian.PutUint16(m[32:], 64)       // packet receive window
	return m
}

// NewOCRP is the PAC's Outgoing-Call-Reply: its own callID, the OCRQ's
// Call ID as peerCallID, and the result (1: connected).
func NewOCRP(callID, peerCallID uint16, result uint8) []byte {
	m := New(OCRP, 32)
	binary.BigEndian.PutUint16(m[12:], callID)
	binary.BigEndian.PutUint16(m[14:], peerCallID)
	m[16] = result
	binary.BigEndian.PutUint32(m[20:], 10000000) // connect speed
	binary.BigEndian.PutUint16(m[24:], 64)       // packet receive window
	return m
}

// NewCCRQ is the PNS's Call-Clear-Request for its callID.
func NewCCRQ(callID uint16) []byte {
	m := New(CCRQ, 16)
	binary.BigEndian.PutUint16(m[12:], callID)
	return m
}

// NewCDN is the PAC's Call-Disconnect-Notify for its callID (result 3:
// call cleared by request, the answer to CCRQ).
func NewCDN(callID uint16, result uint8) []byte {
	m := New(CDN, 148)
	binary.BigEndian.PutUint16(m[12:], callID)
	m[14] = result
	return m
}

// NewStopCCRQ is a Stop-Control-Connection-Request (reason 1: general).
func NewStopCCRQ() []byte {
	m := New(StopCCRQ, 16)
	m[12] = 1
	return m
}

// NewStopCCRP is a Stop-Control-Connection-Reply (result 1: OK).
func NewStopCCRP() []byte {
	m := New(StopCCRP, 16)
	m[12] = 1
	return m
}

// NewEchoRQ is an Echo-Request with the given identifier.
func NewEchoRQ(id uint32) []byte {
	m := New(EchoRQ, 16)
	binary.BigEndian.PutUint32(m[12:], id)
	return m
}

// NewEchoRP answers an Echo-Request whose 4-byte identifier is identifier
// (result 1: OK).
func NewEchoRP(identifier []byte) []byte {
	m := New(EchoRP, 20)
	copy(m[12:16], identifier)
	m[16] = 1
	return m
}

// Read reads one control message from a TCP stream, walking by the Length
// field (a message may arrive in pieces, or several in one segment).
func Read(r io.Reader) ([]byte, error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[0:]))
	if n < HeaderLen || n > MaxLen || binary.BigEndian.Uint32(hdr[4:]) != Cookie {
		return nil, fmt.Errorf("bad control message header % x", hdr)
	}
	m := make([]byte, n)
	copy(m, hdr[:])
	if _, err := io.ReadFull(r, m[HeaderLen:]); err != nil {
		return nil, fmt.Errorf("read control message body: %w", err)
	}
	return m, nil
}

// Type is the control message type of m (m is at least HeaderLen long, as
// Read guarantees).
func Type(m []byte) uint16 { return binary.BigEndian.Uint16(m[8:]) }

// Field reads a 16-bit field at off, or 0 when the message is too short
// (a peer that sends truncated messages gets zeros, not a panic).
func Field(m []byte, off int) uint16 {
	if len(m) < off+2 {
		return 0
	}
	return binary.BigEndian.Uint16(m[off:])
}

// Byte reads the byte at off, or 0 when the message is too short.
func Byte(m []byte, off int) uint8 {
	if len(m) <= off {
		return 0
	}
	return m[off]
}

// GRE returns an enhanced GRE packet (RFC 2637 section 4.1) as the IP
// payload: K and S set, version 1, protocol PPP, the receiver's callID,
// sequence number seq, no acknowledgment, then payload (a PPP frame).
func GRE(callID uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, 12, 12+len(payload))
	b[0], b[1] = 0x30, 0x01 // K, S; version 1
	binary.BigEndian.PutUint16(b[2:], 0x880B)
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	binary.BigEndian.PutUint16(b[6:], callID)
	binary.BigEndian.PutUint32(b[8:], seq)
	return append(b, payload...)
}
