package alg

import "encoding/binary"

// PPP inside enhanced GRE, as far as a gateway can read it before
// encryption starts (PROTOCOL.md "Inside GRE"): the authentication protocol
// LCP negotiated (RFC 1661, 1994, 2433, 2759, 3748) and the MPPE options CCP
// negotiated (RFC 1962, 3078). Everything here is a view over the GRE
// payload: nothing is copied and nothing allocates.

// PPP protocol numbers (RFC 1661 section 2, the IANA PPP DLL protocol numbers).
const (
	PPPProtoLCP       = 0xC021 // Link Control Protocol
	PPPProtoPAP       = 0xC023 // Password Authentication Protocol
	PPPProtoCHAP      = 0xC223 // Challenge Handshake Authentication Protocol
	PPPProtoEAP       = 0xC227 // Extensible Authentication Protocol
	PPPProtoCCP       = 0x80FD // Compression Control Protocol
	PPPProtoCompData  = 0x00FD // compressed (MPPE: encrypted) datagram
	PPPProtoCompLink  = 0x00FB // individual-link compressed datagram
	pppProtoNCPFirst  = 0x8000 // 0x8000-0xBFFF: network control protocols
	pppProtoLinkFirst = 0xC000 // 0xC000-0xFFFF: link-layer control protocols
)

// PPP control packet codes (RFC 1661 section 5).
const (
	PPPConfReq = 1 // Configure-Request
	PPPConfAck = 2 // Configure-Ack: echoes the Request it accepts
	PPPConfNak = 3 // Configure-Nak
	PPPConfRej = 4 // Configure-Reject
)

// Offsets and option types.
const (
	pppAddrByte    = 0xFF // "Address": all-stations, omitted with ACFC
	pppCtrlByte    = 0x03 // "Control": UI, omitted with ACFC
	cpOffCode      = 0    // "Code"
	cpOffLength    = 2    // "Length": the whole packet, header included
	cpHeaderLen    = 4
	lcpOptAuth     = 3  // LCP "Authentication-Protocol" (RFC 1661 section 6.2)
	ccpOptMPPE     = 18 // CCP "MPPE/MPPC" supported bits (RFC 3078 section 2.1)
	chapAlgMD5     = 0x05
	chapAlgMSCHAP1 = 0x80
	chapAlgMSCHAP2 = 0x81
)

// PPPFrame is one PPP frame found in a GRE payload: its protocol and its
// information field, which aliases the payload.
type PPPFrame struct {
	Proto uint16
	Info  []byte
}

// ParsePPP reads a PPP frame's header at the start of b (a GRE payload):
// the address and control bytes FF 03 are skipped when present (absent
// with address/control field compression), and the protocol field is one
// byte when its low bit is set (protocol field compression). ok is false
// when b is too short to hold a protocol.
func ParsePPP(b []byte) (f PPPFrame, ok bool) {
	if len(b) >= 2 && b[0] == pppAddrByte && b[1] == pppCtrlByte {
		b = b[2:]
	}
	switch {
	case len(b) >= 1 && b[0]&1 == 1:
		return PPPFrame{Proto: uint16(b[0]), Info: b[1:]}, true
	case len(b) >= 2:
		return PPPFrame{Proto: binary.BigEndian.Uint16(b), Info: b[2:]}, true
	}
	return PPPFrame{}, false
}

// cpPacket returns the code and the options of a control protocol packet
// (LCP, CCP: RFC 1661 section 5), cut to its Length field.
func cpPacket(info []byte) (code byte, opts []byte, ok bool) {
	if len(info) < cpHeaderLen {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(info[cpOffLength:]))
	if n < cpHeaderLen || n > len(info) {
		return 0, nil, false
	}
	return info[cpOffCode], info[cpHeaderLen:n], true
}

// findOption returns the data of the first option of type typ in a
// Configure packet's options, or ok false when it is absent or the list is
// malformed before it.
func findOption(opts []byte, typ byte) (data []byte, ok bool) {
	for len(opts) >= 2 {
		l := int(opts[1])
		if l < 2 || l > len(opts) {
			return nil, false
		}
		if opts[0] == typ {
			return opts[2:l], true
		}
		opts = opts[l:]
	}
	return nil, false
}

// Auth is a PPP authentication protocol as LCP negotiates it.
type Auth uint8

const (
	AuthUnknown  Auth = iota // not seen (yet)
	AuthNone                 // the link went past authentication without any
	AuthPAP                  // 0xC023
	AuthCHAPMD5              // 0xC223, algorithm 0x05
	AuthMSCHAPv1             // 0xC223, algorithm 0x80
	AuthMSCHAPv2             // 0xC223, algorithm 0x81
	AuthEAP                  // 0xC227
	AuthOther                // another protocol or CHAP algorithm
	authCount
)

var authNames = [...]string{"", "none", "pap", "chap-md5", "mschapv1", "mschapv2", "eap", "other"}

// String is the name `calls` shows and --require-auth takes; "" while unknown.
func (a Auth) String() string {
	if a < authCount {
		return authNames[a]
	}
	return "other"
}

// ParseAuth reads an authentication protocol's name as --require-auth
// spells it (pap, chap-md5, mschapv1, mschapv2, eap).
func ParseAuth(s string) (Auth, bool) {
	for a := AuthPAP; a <= AuthEAP; a++ {
		if authNames[a] == s {
			return a, true
		}
	}
	return AuthUnknown, false
}

// authOf decodes an LCP Authentication-Protocol option's data.
func authOf(d []byte) Auth {
	if len(d) < 2 {
		return AuthOther
	}
	switch binary.BigEndian.Uint16(d) {
	case PPPProtoPAP:
		return AuthPAP
	case PPPProtoEAP:
		return AuthEAP
	case PPPProtoCHAP:
		if len(d) < 3 {
			return AuthOther
		}
		switch d[2] {
		case chapAlgMD5:
			return AuthCHAPMD5
		case chapAlgMSCHAP1:
			return AuthMSCHAPv1
		case chapAlgMSCHAP2:
			return AuthMSCHAPv2
		}
	}
	return AuthOther
}

// MPPE is CCP option 18's 32-bit field (RFC 3078 section 2.1).
type MPPE uint32

// MPPE bits.
const (
	MPPEStateless MPPE = 0x01000000 // H: a new key for every packet
	MPPE56        MPPE = 0x00000080 // M: 56-bit keys
	MPPE128       MPPE = 0x00000040 // S: 128-bit keys
	MPPE40        MPPE = 0x00000020 // L: 40-bit keys
	MPPC          MPPE = 0x00000001 // C: MPPC compression, no encryption
)

// KeyBits is the key length the bits allow; when several are set (a
// Request offering a choice), the weakest one. 0: no encryption.
func (m MPPE) KeyBits() int {
	switch {
	case m&MPPE40 != 0:
		return 40
	case m&MPPE56 != 0:
		return 56
	case m&MPPE128 != 0:
		return 128
	}
	return 0
}

// String is what `calls` shows: "128-bit stateless", "40-bit", "none".
// It allocates nothing.
func (m MPPE) String() string {
	stateless := m&MPPEStateless != 0
	switch m.KeyBits() {
	case 40:
		if stateless {
			return "40-bit stateless"
		}
		return "40-bit"
	case 56:
		if stateless {
			return "56-bit stateless"
		}
		return "56-bit"
	case 128:
		if stateless {
			return "128-bit stateless"
		}
		return "128-bit"
	}
	return "none"
}

// PPPKind is what one GRE payload means for the policy.
type PPPKind uint8

const (
	PPPOther      PPPKind = iota // nothing the policy needs (LCP Requests, echo, the authentication exchange, no payload)
	PPPAuthAcked                 // an LCP Configure-Ack with Authentication-Protocol: Event.Auth
	PPPCCPAcked                  // a CCP Configure-Ack: Event.MPPE, Event.HasMPPE
	PPPNetControl                // another network control packet (IPCP, IPv6CP, CCP): authentication is over
	PPPEncrypted                 // a compressed or MPPE-encrypted datagram (0x00FD, 0x00FB)
	PPPData                      // a network-layer datagram in clear (IPv4, IPv6, ...)
)

var pppKindNames = [...]string{"other", "auth-acked", "ccp-acked", "net-control", "encrypted", "data"}

func (k PPPKind) String() string {
	if int(k) < len(pppKindNames) {
		return pppKindNames[k]
	}
	return "invalid"
}

// PPPEvent is PeekPPP's reading of one frame.
type PPPEvent struct {
	Kind    PPPKind
	Auth    Auth // PPPAuthAcked: the protocol the Ack accepts
	MPPE    MPPE // PPPCCPAcked with HasMPPE: the accepted option 18
	HasMPPE bool // PPPCCPAcked: option 18 was in the Ack
}

// PeekPPP reads the PPP frame in a GRE payload for what the policy needs.
// The negotiated value is the one in a Configure-Ack, which echoes the
// Request it accepts; Requests, Naks and Rejects are only offers. Bytes it
// does not understand are PPPOther: it never fails and never allocates.
func PeekPPP(payload []byte) PPPEvent {
	f, ok := ParsePPP(payload)
	if !ok {
		return PPPEvent{}
	}
	switch p := f.Proto; {
	case p == PPPProtoLCP:
		code, opts, ok := cpPacket(f.Info)
		if !ok || code != PPPConfAck {
			return PPPEvent{}
		}
		if d, ok := findOption(opts, lcpOptAuth); ok {
			return PPPEvent{Kind: PPPAuthAcked, Auth: authOf(d)}
		}
		return PPPEvent{}
	case p == PPPProtoCCP:
		code, opts, ok := cpPacket(f.Info)
		if !ok || code != PPPConfAck {
			return PPPEvent{Kind: PPPNetControl}
		}
		if d, ok := findOption(opts, ccpOptMPPE); ok && len(d) == 4 {
			return PPPEvent{Kind: PPPCCPAcked, MPPE: MPPE(binary.BigEndian.Uint32(d)), HasMPPE: true}
		}
		return PPPEvent{Kind: PPPCCPAcked}
	case p == PPPProtoCompData || p == PPPProtoCompLink:
		return PPPEvent{Kind: PPPEncrypted}
	case p >= pppProtoLinkFirst:
		return PPPEvent{}
	case p >= pppProtoNCPFirst:
		return PPPEvent{Kind: PPPNetControl}
	case p&1 == 1 && p&0x100 == 0:
		// A valid network-layer protocol number (odd, low bit of the high
		// byte clear: RFC 1661 section 2).
		return PPPEvent{Kind: PPPData}
	}
	return PPPEvent{}
}
