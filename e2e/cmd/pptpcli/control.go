package main

import (
	"encoding/binary"
	"fmt"
	"io"
)

// PPTP control message types (RFC 2637; offsets in PROTOCOL.md).
const (
	msgSCCRQ    = 1
	msgSCCRP    = 2
	msgStopRQ   = 3
	msgStopRP   = 4
	msgEchoRQ   = 5
	msgEchoRP   = 6
	msgOCRQ     = 7
	msgOCRP     = 8
	msgCCRQ     = 12
	msgCDN      = 13
	msgWEN      = 14
	msgSLI      = 15
	magicCookie = 0x1A2B3C4D
	headerLen   = 12
	maxMsgLen   = 512 // the longest message (ICRQ) is 220 bytes
)

var msgNames = map[uint16]string{
	1: "SCCRQ", 2: "SCCRP", 3: "StopCCRQ", 4: "StopCCRP", 5: "Echo-Request", 6: "Echo-Reply",
	7: "OCRQ", 8: "OCRP", 9: "ICRQ", 10: "ICRP", 11: "ICCN", 12: "CCRQ", 13: "CDN", 14: "WEN", 15: "SLI",
}

// newMsg returns a zeroed control message of the given type and total length
// with the header filled in.
func newMsg(typ uint16, length int) []byte {
	m := make([]byte, length)
	binary.BigEndian.PutUint16(m[0:], uint16(length))
	binary.BigEndian.PutUint16(m[2:], 1) // control message
	binary.BigEndian.PutUint32(m[4:], magicCookie)
	binary.BigEndian.PutUint16(m[8:], typ)
	return m
}

func sccrq(hostname string) []byte {
	m := newMsg(msgSCCRQ, 156)
	binary.BigEndian.PutUint16(m[12:], 0x0100) // protocol version 1.0
	binary.BigEndian.PutUint32(m[16:], 1)      // framing: async
	binary.BigEndian.PutUint32(m[20:], 1)      // bearer: analog
	binary.BigEndian.PutUint16(m[24:], 0)      // max channels
	binary.BigEndian.PutUint16(m[26:], 1)      // firmware revision
	copy(m[28:92], hostname)
	copy(m[92:156], "pptpgw-lab")
	return m
}

func ocrq(callID, serial uint16) []byte {
	m := newMsg(msgOCRQ, 168)
	binary.BigEndian.PutUint16(m[12:], callID)
	binary.BigEndian.PutUint16(m[14:], serial)
	binary.BigEndian.PutUint32(m[16:], 2400)     // minimum bps
	binary.BigEndian.PutUint32(m[20:], 10000000) // maximum bps
	binary.BigEndian.PutUint32(m[24:], 3)        // bearer: any
	binary.BigEndian.PutUint32(m[28:], 3)        // framing: any
	binary.BigEndian.PutUint16(m[32:], 64)       // packet receive window
	return m
}

func ccrq(callID uint16) []byte {
	m := newMsg(msgCCRQ, 16)
	binary.BigEndian.PutUint16(m[12:], callID)
	return m
}

func stopRQ() []byte {
	m := newMsg(msgStopRQ, 16)
	m[12] = 1 // reason: general request to clear the control connection
	return m
}

func stopRP() []byte {
	m := newMsg(msgStopRP, 16)
	m[12] = 1 // result: OK
	return m
}

func echoRP(identifier []byte) []byte {
	m := newMsg(msgEchoRP, 20)
	copy(m[12:16], identifier)
	m[16] = 1 // result: OK
	return m
}

// readMsg reads one control message from a TCP stream, walking by the
// Length field (a message may arrive in pieces, or several in one segment).
func readMsg(r io.Reader) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[0:]))
	if n < headerLen || n > maxMsgLen || binary.BigEndian.Uint32(hdr[4:]) != magicCookie {
		return nil, fmt.Errorf("bad control message header % x", hdr)
	}
	m := make([]byte, n)
	copy(m, hdr[:])
	if _, err := io.ReadFull(r, m[headerLen:]); err != nil {
		return nil, fmt.Errorf("read control message body: %w", err)
	}
	return m, nil
}

func msgType(m []byte) uint16 { return binary.BigEndian.Uint16(m[8:]) }

// field reads a 16-bit field at off, or 0 when the message is too short
// (a peer that sends truncated messages gets zeros, not a panic).
func field(m []byte, off int) uint16 {
	if len(m) < off+2 {
		return 0
	}
	return binary.BigEndian.Uint16(m[off:])
}

func byteAt(m []byte, off int) uint8 {
	if len(m) <= off {
		return 0
	}
	return m[off]
}
