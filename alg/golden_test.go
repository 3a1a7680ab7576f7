package alg

// Golden control messages and GRE headers shared by the tests, the fuzz
// seeds and the benchmarks. The short messages are written out byte by byte;
// the long ones (SCCRQ/SCCRP 156, OCRQ 168, ICRQ 220, CDN 148) give their
// fixed fields and are padded with zeros (host names, phone numbers,
// statistics) by msgOf.

// msgOf returns a message of n bytes that starts with head and is zero
// padded.
func msgOf(n int, head ...byte) []byte {
	b := make([]byte, n)
	copy(b, head)
	return b
}

var goldenSCCRQ = msgOf(156,
	0x00, 0x9c, // Length 156
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x01, // Control Message Type: SCCRQ
	0x00, 0x00, // Reserved0
	0x01, 0x00, // Protocol Version 1.0
	0x00, 0x00, // Reserved1
	0x00, 0x00, 0x00, 0x01, // Framing Capabilities: async
	0x00, 0x00, 0x00, 0x01, // Bearer Capabilities: analog
	0x00, 0x00, // Maximum Channels
	0x00, 0x01, // Firmware Revision
	'l', 'o', 'c', 'a', 'l', // Host Name (64), then Vendor String (64)
)

var goldenSCCRP = msgOf(156,
	0x00, 0x9c, // Length 156
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x02, // Control Message Type: SCCRP
	0x00, 0x00, // Reserved0
	0x01, 0x00, // Protocol Version 1.0
	0x01,                   // Result Code: OK
	0x00,                   // Error Code
	0x00, 0x00, 0x00, 0x03, // Framing Capabilities
	0x00, 0x00, 0x00, 0x03, // Bearer Capabilities
	0x00, 0x01, // Maximum Channels
	0x00, 0x01, // Firmware Revision
	'p', 'a', 'c', // Host Name (64), then Vendor String (64)
)

var goldenStopCCRQ = []byte{
	0x00, 0x10, // Length 16
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x03, // Control Message Type: StopCCRQ
	0x00, 0x00, // Reserved0
	0x01,       // Reason: none
	0x00,       // Reserved1
	0x00, 0x00, // Reserved2
}

var goldenStopCCRP = []byte{
	0x00, 0x10, // Length 16
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x04, // Control Message Type: StopCCRP
	0x00, 0x00, // Reserved0
	0x01,       // Result Code: OK
	0x00,       // Error Code
	0x00, 0x00, // Reserved2
}

var goldenEchoRQ = []byte{
	0x00, 0x10, // Length 16
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x05, // Control Message Type: Echo-Request
	0x00, 0x00, // Reserved0
	0xde, 0xad, 0xbe, 0xef, // Identifier
}

var goldenEchoRP = []byte{
	0x00, 0x14, // Length 20
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x06, // Control Message Type: Echo-Reply
	0x00, 0x00, // Reserved0
	0xde, 0xad, 0xbe, 0xef, // Identifier
	0x01,       // Result Code: OK
	0x00,       // Error Code
	0x00, 0x00, // Reserved1
}

var goldenOCRQ = msgOf(168,
	0x00, 0xa8, // Length 168
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x07, // Control Message Type: OCRQ
	0x00, 0x00, // Reserved0
	0x12, 0x34, // Call ID (PNS's)
	0x00, 0x07, // Call Serial Number
	0x00, 0x00, 0x01, 0x2c, // Minimum BPS 300
	0x05, 0xf5, 0xe1, 0x00, // Maximum BPS 100000000
	0x00, 0x00, 0x00, 0x03, // Bearer Type: any
	0x00, 0x00, 0x00, 0x03, // Framing Type: any
	0x00, 0x40, // Packet Recv. Window Size 64
	0x00, 0x00, // Packet Processing Delay
	0x00, 0x00, // Phone Number Length
	0x00, 0x00, // Reserved1
	// Phone Number (64), Subaddress (64)
)

var goldenOCRP = []byte{
	0x00, 0x20, // Length 32
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x08, // Control Message Type: OCRP
	0x00, 0x00, // Reserved0
	0xab, 0xcd, // Call ID (PAC's)
	0x12, 0x34, // Peer's Call ID (PNS's)
	0x01,       // Result Code: connected
	0x00,       // Error Code
	0x00, 0x00, // Cause Code
	0x05, 0xf5, 0xe1, 0x00, // Connect Speed
	0x00, 0x40, // Packet Recv. Window Size
	0x00, 0x00, // Packet Processing Delay
	0x00, 0x00, 0x00, 0x00, // Physical Channel ID
}

var goldenICRQ = msgOf(220,
	0x00, 0xdc, // Length 220
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x09, // Control Message Type: ICRQ
	0x00, 0x00, // Reserved0
	0x56, 0x78, // Call ID (PAC's)
	0x00, 0x02, // Call Serial Number
	0x00, 0x00, 0x00, 0x01, // Call Bearer Type
	0x00, 0x00, 0x00, 0x09, // Physical Channel ID
	0x00, 0x00, // Dialed Number Length
	0x00, 0x00, // Dialing Number Length
	// Dialed Number (64), Dialing Number (64), Subaddress (64)
)

var goldenICRP = []byte{
	0x00, 0x18, // Length 24
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x0a, // Control Message Type: ICRP
	0x00, 0x00, // Reserved0
	0x9a, 0xbc, // Call ID (PNS's)
	0x56, 0x78, // Peer's Call ID (PAC's)
	0x01,       // Result Code: connect
	0x00,       // Error Code
	0x00, 0x40, // Packet Recv. Window Size
	0x00, 0x00, // Packet Transmit Delay
	0x00, 0x00, // Reserved1
}

var goldenICCN = []byte{
	0x00, 0x1c, // Length 28
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x0b, // Control Message Type: ICCN
	0x00, 0x00, // Reserved0
	0x9a, 0xbc, // Peer's Call ID (PNS's)
	0x00, 0x00, // Reserved1
	0x00, 0x00, 0xfa, 0x00, // Connect Speed
	0x00, 0x40, // Packet Recv. Window Size
	0x00, 0x00, // Packet Transmit Delay
	0x00, 0x00, 0x00, 0x01, // Framing Type
}

var goldenCCRQ = []byte{
	0x00, 0x10, // Length 16
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x0c, // Control Message Type: CCRQ
	0x00, 0x00, // Reserved0
	0x12, 0x34, // Call ID (PNS's)
	0x00, 0x00, // Reserved1
}

var goldenCDN = msgOf(148,
	0x00, 0x94, // Length 148
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x0d, // Control Message Type: CDN
	0x00, 0x00, // Reserved0
	0xab, 0xcd, // Call ID (PAC's)
	0x03,       // Result Code: admin shutdown
	0x00,       // Error Code
	0x00, 0x00, // Cause Code
	0x00, 0x00, // Reserved1
	// Call Statistics (128)
)

var goldenWEN = msgOf(40,
	0x00, 0x28, // Length 40
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x0e, // Control Message Type: WEN
	0x00, 0x00, // Reserved0
	0x12, 0x34, // Peer's Call ID (PNS's)
	0x00, 0x00, // Reserved1
	0x00, 0x00, 0x00, 0x02, // CRC Errors
	// Framing, Hardware Overruns, Buffer Overruns, Time-out, Alignment Errors
)

var goldenSLI = []byte{
	0x00, 0x18, // Length 24
	0x00, 0x01, // PPTP Message Type: control
	0x1a, 0x2b, 0x3c, 0x4d, // Magic Cookie
	0x00, 0x0f, // Control Message Type: SLI
	0x00, 0x00, // Reserved0
	0xab, 0xcd, // Peer's Call ID (the receiver's)
	0x00, 0x00, // Reserved1
	0xff, 0xff, 0xff, 0xff, // Send ACCM
	0xff, 0xff, 0xff, 0xff, // Receive ACCM
}

// goldenCtrl is every control message type, indexed by type.
var goldenCtrl = [...][]byte{
	SCCRQ: goldenSCCRQ, SCCRP: goldenSCCRP, StopCCRQ: goldenStopCCRQ, StopCCRP: goldenStopCCRP,
	EchoRQ: goldenEchoRQ, EchoRP: goldenEchoRP, OCRQ: goldenOCRQ, OCRP: goldenOCRP,
	ICRQ: goldenICRQ, ICRP: goldenICRP, ICCN: goldenICCN, CCRQ: goldenCCRQ, CDN: goldenCDN,
	WEN: goldenWEN, SLI: goldenSLI,
}

// golden returns a fresh copy of the golden message of type t.
func golden(t MsgType) []byte { return clone(goldenCtrl[t]) }

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// withCallIDs returns a copy of the golden message of type t with the
// fields at offsets 12 and 14 set.
func withCallIDs(t MsgType, at12, at14 uint16) []byte {
	b := golden(t)
	b[12], b[13] = byte(at12>>8), byte(at12)
	b[14], b[15] = byte(at14>>8), byte(at14)
	return b
}

// GRE v1 headers in their four forms.
var (
	greBoth = []byte{
		0x30,       // C R K S s Recur: K, S
		0x81,       // A Flags Ver: A, version 1
		0x88, 0x0b, // Protocol Type: PPP
		0x00, 0x04, // Payload Length 4
		0x12, 0x34, // Call ID
		0x00, 0x00, 0x00, 0x07, // Sequence Number
		0x00, 0x00, 0x00, 0x05, // Acknowledgment Number
		0xff, 0x03, 0xc0, 0x21, // PPP: address, control, LCP
	}
	greSeqOnly = []byte{
		0x30,       // K, S
		0x01,       // version 1
		0x88, 0x0b, // PPP
		0x00, 0x02, // Payload Length 2
		0xab, 0xcd, // Call ID
		0xff, 0xff, 0xff, 0xff, // Sequence Number
		0x00, 0xfd, // PPP: protocol 0x00FD (compressed address/control)
	}
	greAckOnly = []byte{
		0x20,       // K
		0x81,       // A, version 1
		0x88, 0x0b, // PPP
		0x00, 0x00, // Payload Length 0
		0x00, 0x01, // Call ID
		0x80, 0x00, 0x00, 0x00, // Acknowledgment Number
	}
	greNeither = []byte{
		0x20,       // K
		0x01,       // version 1
		0x88, 0x0b, // PPP
		0x00, 0x00, // Payload Length 0
		0xff, 0xfe, // Call ID
	}
	// grePadded carries 2 bytes of padding after its 2-byte payload.
	grePadded = []byte{
		0x30,       // K, S
		0x01,       // version 1
		0x88, 0x0b, // PPP
		0x00, 0x02, // Payload Length 2
		0x00, 0x00, // Call ID
		0x00, 0x00, 0x00, 0x01, // Sequence Number
		0x00, 0xfd, // PPP
		0x00, 0x00, // padding
	}
)
