package alg

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pptpgw/pptpgw/alg/pptptest"
)

// Golden PPP frames as they travel in a GRE payload.
var (
	// LCP Configure-Ack accepting MS-CHAPv2 (pptpd's usual Request).
	pppLCPAckMSCHAPv2 = []byte{
		0xff, 0x03, // address, control
		0xc0, 0x21, // protocol: LCP
		0x02, 0x01, 0x00, 0x0d, // Configure-Ack, id 1, length 13
		0x03, 0x05, 0xc2, 0x23, 0x81, // Authentication-Protocol: CHAP, MS-CHAPv2
		0x05, 0x06, 0x12, 0x34, 0x56, 0x78, // Magic-Number
	}
	// The same Ack with address/control compressed away.
	pppLCPAckMSCHAPv2ACFC = pppLCPAckMSCHAPv2[2:]
	// LCP Configure-Request offering EAP: only an offer.
	pppLCPReqEAP = []byte{0xff, 0x03, 0xc0, 0x21, 0x01, 0x02, 0x00, 0x08, 0x03, 0x04, 0xc2, 0x27}
	// LCP Configure-Ack accepting EAP.
	pppLCPAckEAP = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x02, 0x00, 0x08, 0x03, 0x04, 0xc2, 0x27}
	// LCP Configure-Ack accepting PAP, Magic-Number first.
	pppLCPAckPAP = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x07, 0x00, 0x0e,
		0x05, 0x06, 0xde, 0xad, 0xbe, 0xef, 0x03, 0x04, 0xc0, 0x23}
	// LCP Configure-Ack accepting CHAP-MD5 and MS-CHAPv1.
	pppLCPAckCHAPMD5  = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x09, 0x03, 0x05, 0xc2, 0x23, 0x05}
	pppLCPAckMSCHAPv1 = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x09, 0x03, 0x05, 0xc2, 0x23, 0x80}
	// LCP Configure-Ack without Authentication-Protocol (the client's own options).
	pppLCPAckNoAuth = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x0a, 0x05, 0x06, 0x01, 0x02, 0x03, 0x04}
	// CCP Configure-Ack: MPPE 128-bit stateless.
	pppCCPAck128H = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a,
		0x12, 0x06, 0x01, 0x00, 0x00, 0x40}
	// CCP Configure-Request offering 40 and 128 bits: only an offer.
	pppCCPReq40128 = []byte{0xff, 0x03, 0x80, 0xfd, 0x01, 0x05, 0x00, 0x0a,
		0x12, 0x06, 0x00, 0x00, 0x00, 0x60}
	// CCP Configure-Ack: MPPE 40-bit, address/control compressed away (a
	// control protocol's field is never compressed: its high byte is not 0).
	pppCCPAck40 = []byte{0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x00, 0x00, 0x00, 0x20}
	// CCP Configure-Ack: MPPC only, no encryption.
	pppCCPAckMPPC = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x00, 0x00, 0x00, 0x01}
	// CCP Configure-Ack of another compressor (Deflate, option 26).
	pppCCPAckDeflate = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x08, 0x1a, 0x04, 0x78, 0x00}
	// IPCP Configure-Request.
	pppIPCPReq = []byte{0xff, 0x03, 0x80, 0x21, 0x01, 0x01, 0x00, 0x0a, 0x03, 0x06, 0xc0, 0xa8, 0x01, 0x01}
	// An MPPE-encrypted datagram, protocol field compressed and not.
	pppEncPFC  = []byte{0xfd, 0x90, 0x01, 0xaa, 0xbb}
	pppEncFull = []byte{0xff, 0x03, 0x00, 0xfd, 0x90, 0x01, 0xaa, 0xbb}
	// IPv4 in clear, protocol field compressed.
	pppIPv4PFC = []byte{0x21, 0x45, 0x00, 0x00, 0x14}
	// LCP Echo-Request.
	pppLCPEcho = []byte{0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 0x12, 0x34, 0x56, 0x78}
	// MS-CHAPv2 Challenge.
	pppCHAPChallenge = []byte{0xff, 0x03, 0xc2, 0x23, 0x01, 0x01, 0x00, 0x06, 0x01, 0xaa}
)

func TestPeekPPP(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want PPPEvent
	}{
		{"lcp_ack_mschapv2", pppLCPAckMSCHAPv2, PPPEvent{Kind: PPPAuthAcked, Auth: AuthMSCHAPv2}},
		{"lcp_ack_mschapv2_acfc", pppLCPAckMSCHAPv2ACFC, PPPEvent{Kind: PPPAuthAcked, Auth: AuthMSCHAPv2}},
		{"lcp_ack_mschapv1", pppLCPAckMSCHAPv1, PPPEvent{Kind: PPPAuthAcked, Auth: AuthMSCHAPv1}},
		{"lcp_ack_chap_md5", pppLCPAckCHAPMD5, PPPEvent{Kind: PPPAuthAcked, Auth: AuthCHAPMD5}},
		{"lcp_ack_pap_second_option", pppLCPAckPAP, PPPEvent{Kind: PPPAuthAcked, Auth: AuthPAP}},
		{"lcp_ack_eap", pppLCPAckEAP, PPPEvent{Kind: PPPAuthAcked, Auth: AuthEAP}},
		{"lcp_req_eap_is_an_offer", pppLCPReqEAP, PPPEvent{}},
		{"lcp_ack_no_auth", pppLCPAckNoAuth, PPPEvent{}},
		{"lcp_ack_chap_unknown_alg", setByte(pppLCPAckCHAPMD5, 12, 0x06), PPPEvent{Kind: PPPAuthAcked, Auth: AuthOther}},
		{"lcp_ack_chap_no_alg", []byte{0xc0, 0x21, 0x02, 0x01, 0x00, 0x08, 0x03, 0x04, 0xc2, 0x23}, PPPEvent{Kind: PPPAuthAcked, Auth: AuthOther}},
		{"lcp_ack_length_beyond", setByte(pppLCPAckMSCHAPv2, 7, 0x40), PPPEvent{}},
		{"lcp_ack_length_short", setByte(pppLCPAckMSCHAPv2, 7, 0x03), PPPEvent{}},
		{"lcp_ack_option_len_0", setByte(pppLCPAckMSCHAPv2, 9, 0), PPPEvent{}},
		{"lcp_ack_option_len_beyond", setByte(pppLCPAckMSCHAPv2, 9, 0x20), PPPEvent{}},
		{"lcp_ack_auth_after_length", append(setByte(pppLCPAckNoAuth, 7, 0x0a), 0x03, 0x04, 0xc0, 0x23), PPPEvent{}},
		{"ccp_ack_128_stateless", pppCCPAck128H, PPPEvent{Kind: PPPCCPAcked, MPPE: MPPEStateless | MPPE128, HasMPPE: true}},
		{"ccp_ack_40_acfc", pppCCPAck40, PPPEvent{Kind: PPPCCPAcked, MPPE: MPPE40, HasMPPE: true}},
		{"ccp_ack_mppc", pppCCPAckMPPC, PPPEvent{Kind: PPPCCPAcked, MPPE: MPPC, HasMPPE: true}},
		{"ccp_ack_deflate", pppCCPAckDeflate, PPPEvent{Kind: PPPCCPAcked}},
		{"ccp_req_is_an_offer", pppCCPReq40128, PPPEvent{Kind: PPPNetControl}},
		{"ccp_ack_short_option", []byte{0x80, 0xfd, 0x02, 0x05, 0x00, 0x08, 0x12, 0x04, 0x00, 0x40}, PPPEvent{Kind: PPPCCPAcked}},
		{"ipcp", pppIPCPReq, PPPEvent{Kind: PPPNetControl}},
		{"encrypted_pfc", pppEncPFC, PPPEvent{Kind: PPPEncrypted}},
		{"encrypted", pppEncFull, PPPEvent{Kind: PPPEncrypted}},
		{"ipv4_pfc", pppIPv4PFC, PPPEvent{Kind: PPPData}},
		{"ipv6", []byte{0x00, 0x57, 0x60}, PPPEvent{Kind: PPPData}},
		{"lcp_echo", pppLCPEcho, PPPEvent{}},
		{"chap_challenge", pppCHAPChallenge, PPPEvent{}},
		{"even_protocol", []byte{0x00, 0x20, 0x45}, PPPEvent{}},
		{"empty", nil, PPPEvent{}},
		{"address_control_only", []byte{0xff, 0x03}, PPPEvent{}},
		{"one_even_byte", []byte{0xc0}, PPPEvent{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, PeekPPP(tt.in)); diff != "" {
				t.Errorf("PeekPPP(% x) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func setByte(b []byte, off int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[off] = v
	return c
}

func TestParsePPP(t *testing.T) {
	tests := []struct {
		name      string
		in        []byte
		proto     uint16
		infoStart int
		ok        bool
	}{
		{"full", pppLCPEcho, PPPProtoLCP, 4, true},
		{"acfc", pppLCPEcho[2:], PPPProtoLCP, 2, true},
		{"pfc", pppEncPFC, PPPProtoCompData, 1, true},
		{"acfc_pfc_after_ff03", []byte{0xff, 0x03, 0x21, 0x45}, 0x21, 3, true},
		{"empty", nil, 0, 0, false},
		{"ff03_only", []byte{0xff, 0x03}, 0, 0, false},
		{"one_even", []byte{0x80}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := ParsePPP(tt.in)
			if ok != tt.ok || f.Proto != tt.proto {
				t.Fatalf("ParsePPP = %#04x, %v; want %#04x, %v", f.Proto, ok, tt.proto, tt.ok)
			}
			if ok && !bytes.Equal(f.Info, tt.in[tt.infoStart:]) {
				t.Errorf("Info = % x, want % x", f.Info, tt.in[tt.infoStart:])
			}
		})
	}
}

func TestMPPEString(t *testing.T) {
	tests := []struct {
		m    MPPE
		want string
		bits int
	}{
		{MPPEStateless | MPPE128, "128-bit stateless", 128},
		{MPPE128, "128-bit", 128},
		{MPPE56, "56-bit", 56},
		{MPPEStateless | MPPE56, "56-bit stateless", 56},
		{MPPE40, "40-bit", 40},
		{MPPEStateless | MPPE40, "40-bit stateless", 40},
		{MPPE40 | MPPE128, "40-bit", 40}, // an offer: the weakest
		{MPPC, "none", 0},
		{0, "none", 0},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want || tt.m.KeyBits() != tt.bits {
			t.Errorf("MPPE(%#x) = %q, %d bits; want %q, %d", uint32(tt.m), got, tt.m.KeyBits(), tt.want, tt.bits)
		}
	}
}

func TestAuthNames(t *testing.T) {
	for _, name := range []string{"pap", "chap-md5", "mschapv1", "mschapv2", "eap"} {
		a, ok := ParseAuth(name)
		if !ok || a.String() != name {
			t.Errorf("ParseAuth(%q) = %v, %v", name, a, ok)
		}
	}
	for _, name := range []string{"", "none", "other", "MSCHAPV2", "chap"} {
		if a, ok := ParseAuth(name); ok {
			t.Errorf("ParseAuth(%q) = %v, want not ok", name, a)
		}
	}
}

func TestPeekPPPAllocs(t *testing.T) {
	frames := [][]byte{pppLCPAckMSCHAPv2, pppCCPAck128H, pppEncPFC, pppIPCPReq}
	n := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			ev := PeekPPP(f)
			_ = ev.MPPE.String()
			_ = ev.Auth.String()
		}
	})
	if n != 0 {
		t.Errorf("PeekPPP allocates %v times per run, want 0", n)
	}
}

func BenchmarkPeekPPP(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		PeekPPP(pppEncPFC)
		PeekPPP(pppLCPAckMSCHAPv2)
	}
}

// captureGRE returns the GRE v1 payloads (PPP frames) of a capture in
// testdata/pcaps, in order, each with its GRE Call ID.
func captureGRE(t *testing.T, name string) (frames [][]byte, callIDs []uint16) {
	t.Helper()
	all, lt := pptptest.Frames(t, pptptest.ReadCapture(t, name))
	for _, f := range all {
		p := gopacket.NewPacket(f.Data, lt, gopacket.NoCopy)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || ip.Protocol != layers.IPProtocolGRE {
			continue
		}
		g, r := ParseGRE(ip.Payload)
		if r != ReasonNone {
			continue
		}
		frames = append(frames, g.Payload())
		callIDs = append(callIDs, g.CallID())
	}
	return frames, callIDs
}

// negotiation is what a policy learns from a capture's GRE: every event
// but PPPOther, in order, with consecutive repeats folded.
func negotiation(frames [][]byte) []PPPEvent {
	var evs []PPPEvent
	for _, f := range frames {
		ev := PeekPPP(f)
		if ev.Kind == PPPOther || (len(evs) > 0 && evs[len(evs)-1] == ev) {
			continue
		}
		evs = append(evs, ev)
	}
	return evs
}

// summary folds a capture's events into what `calls` would show.
func summary(evs []PPPEvent) (auth Auth, mppe string, encrypted, clear bool) {
	mppe = ""
	for _, ev := range evs {
		switch ev.Kind {
		case PPPAuthAcked:
			auth = ev.Auth
		case PPPCCPAcked:
			mppe = ev.MPPE.String()
		case PPPEncrypted:
			encrypted = true
		case PPPData:
			clear = true
		}
	}
	return auth, mppe, encrypted, clear
}

func TestPeekPPPCaptures(t *testing.T) {
	tests := []struct {
		file      string
		auth      Auth
		mppe      string
		encrypted bool
		clear     bool
	}{
		// Ixia PNS and Cisco PAC: PAP, IPCP, then ICMP in clear.
		{"packetlife-backup__PPTP_negotiation.cap", AuthPAP, "", false, true},
		// pptp-linux and pptpd: MS-CHAPv2, MPPE 128-bit stateless, encrypted data.
		{"chapcrack__sample.dump", AuthMSCHAPv2, "128-bit stateless", true, false},
		// Windows and RRAS: EAP offered, MS-CHAPv2 acked, MPPE.
		{"pptpcrack__test.pcap", AuthMSCHAPv2, "128-bit stateless", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			frames, _ := captureGRE(t, tt.file)
			evs := negotiation(frames)
			auth, mppe, enc, clear := summary(evs)
			if auth != tt.auth || mppe != tt.mppe || enc != tt.encrypted || clear != tt.clear {
				t.Errorf("auth %q mppe %q encrypted %v clear %v; want %q %q %v %v\nevents %v",
					auth, mppe, enc, clear, tt.auth, tt.mppe, tt.encrypted, tt.clear, evs)
			}
		})
	}
}

// TestPeekPPPEAPOffered: in the RRAS capture the PAC first asks for EAP,
// the client Naks it, and MS-CHAPv2 is what the Ack says.
func TestPeekPPPEAPOffered(t *testing.T) {
	frames, _ := captureGRE(t, "pptpcrack__test.pcap")
	offeredEAP := false
	for _, f := range frames {
		p, ok := ParsePPP(f)
		if !ok || p.Proto != PPPProtoLCP {
			continue
		}
		if code, opts, ok := cpPacket(p.Info); ok && code == PPPConfReq {
			if d, ok := findOption(opts, lcpOptAuth); ok && authOf(d) == AuthEAP {
				offeredEAP = true
			}
		}
	}
	if !offeredEAP {
		t.Error("no LCP Configure-Request offering EAP found")
	}
}

// FuzzPPP checks PeekPPP and ParsePPP on any bytes: no panic, Info aliases
// the input's tail, and the event's fields agree with its kind.
func FuzzPPP(f *testing.F) {
	for _, b := range [][]byte{pppLCPAckMSCHAPv2, pppLCPAckPAP, pppLCPAckEAP, pppLCPReqEAP, pppCCPAck128H,
		pppCCPAck40, pppCCPAckMPPC, pppEncPFC, pppIPv4PFC, pppIPCPReq, pppLCPEcho} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, ok := ParsePPP(b); ok {
			if len(p.Info) > len(b) || (len(p.Info) > 0 && &p.Info[len(p.Info)-1] != &b[len(b)-1]) {
				t.Fatalf("Info is not the input's tail")
			}
		}
		ev := PeekPPP(b)
		switch ev.Kind {
		case PPPAuthAcked:
			if ev.Auth < AuthPAP || ev.Auth > AuthOther {
				t.Fatalf("auth acked with %v", ev.Auth)
			}
		default:
			if ev.Auth != AuthUnknown {
				t.Fatalf("%v with auth %v", ev.Kind, ev.Auth)
			}
		}
		if ev.HasMPPE != (ev.Kind == PPPCCPAcked && ev.HasMPPE) || (!ev.HasMPPE && ev.MPPE != 0) {
			t.Fatalf("MPPE %#x (has %v) on %v", uint32(ev.MPPE), ev.HasMPPE, ev.Kind)
		}
		switch ev.MPPE.KeyBits() {
		case 0, 40, 56, 128:
		default:
			t.Fatalf("key bits %d", ev.MPPE.KeyBits())
		}
		_ = ev.MPPE.String()
	})
}
