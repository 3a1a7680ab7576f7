package alg

import (
	"bytes"
	"fmt"
	"testing"
)

// ctrlWant is what the accessors of a parsed message return.
type ctrlWant struct {
	Type       MsgType
	Length     int
	CallID     uint16
	PeerCallID uint16
	Result     byte
}

func ctrlGot(c Ctrl) ctrlWant {
	return ctrlWant{Type: c.Type(), Length: c.Length(), CallID: c.CallID(),
		PeerCallID: c.PeerCallID(), Result: c.Result()}
}

func TestParseCtrlValid(t *testing.T) {
	tests := []struct {
		in   []byte
		want ctrlWant
	}{
		// CallID and PeerCallID read offsets 12 and 14 whatever the type;
		// Fields says what they mean.
		{goldenSCCRQ, ctrlWant{SCCRQ, 156, 0x0100, 0x0000, 0}},
		{goldenSCCRP, ctrlWant{SCCRP, 156, 0x0100, 0x0100, 1}},
		{goldenStopCCRQ, ctrlWant{StopCCRQ, 16, 0x0100, 0x0000, 0}},
		{goldenStopCCRP, ctrlWant{StopCCRP, 16, 0x0100, 0x0000, 1}},
		{goldenEchoRQ, ctrlWant{EchoRQ, 16, 0xdead, 0xbeef, 0}},
		{goldenEchoRP, ctrlWant{EchoRP, 20, 0xdead, 0xbeef, 0}},
		{goldenOCRQ, ctrlWant{OCRQ, 168, 0x1234, 0x0007, 0}},
		{goldenOCRP, ctrlWant{OCRP, 32, 0xabcd, 0x1234, 1}},
		{goldenICRQ, ctrlWant{ICRQ, 220, 0x5678, 0x0002, 0}},
		{goldenICRP, ctrlWant{ICRP, 24, 0x9abc, 0x5678, 1}},
		{goldenICCN, ctrlWant{ICCN, 28, 0x9abc, 0x0000, 0}},
		{goldenCCRQ, ctrlWant{CCRQ, 16, 0x1234, 0x0000, 0}},
		{goldenCDN, ctrlWant{CDN, 148, 0xabcd, 0x0300, 3}},
		{goldenWEN, ctrlWant{WEN, 40, 0x1234, 0x0000, 0}},
		{goldenSLI, ctrlWant{SLI, 24, 0xabcd, 0x0000, 0}},
	}
	if len(tests) != 15 {
		t.Fatalf("%d cases, want one per control message type", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.want.Type.String(), func(t *testing.T) {
			if got := RFCLength(tt.want.Type); got != len(tt.in) {
				t.Fatalf("RFCLength(%v) = %d, golden message is %d bytes", tt.want.Type, got, len(tt.in))
			}
			in := clone(tt.in)
			c, r := ParseCtrl(in)
			if r != ReasonNone {
				t.Fatalf("ParseCtrl: reason %v, want none", r)
			}
			if len(c) != len(in) || &c[0] != &in[0] {
				t.Errorf("ParseCtrl view: %d bytes at %p, want %d bytes at %p (zero copy)", len(c), &c[0], len(in), &in[0])
			}
			if got := ctrlGot(c); got != tt.want {
				t.Errorf("accessors (-want +got):\n-%+v\n+%+v", tt.want, got)
			}

			// Followed by more bytes (the next message): the view is
			// exactly this message.
			long := concat(tt.in, goldenSLI, []byte{0xee})
			c, r = ParseCtrl(long)
			if r != ReasonNone || len(c) != len(tt.in) || !bytes.Equal(c, tt.in) {
				t.Errorf("ParseCtrl with trailing bytes: %d bytes, reason %v; want %d bytes, none", len(c), r, len(tt.in))
			}

			// The setters write offsets 12 and 14, big-endian, in place.
			c, _ = ParseCtrl(in)
			c.SetCallID(0xa1b2)
			c.SetPeerCallID(0xc3d4)
			if in[12] != 0xa1 || in[13] != 0xb2 || in[14] != 0xc3 || in[15] != 0xd4 {
				t.Errorf("after SetCallID/SetPeerCallID: % x, want a1 b2 c3 d4", in[12:16])
			}
			if c.CallID() != 0xa1b2 || c.PeerCallID() != 0xc3d4 {
				t.Errorf("CallID, PeerCallID = %#x, %#x after setting; want 0xa1b2, 0xc3d4", c.CallID(), c.PeerCallID())
			}
			if !bytes.Equal(in[:12], tt.in[:12]) || !bytes.Equal(in[16:], tt.in[16:]) {
				t.Errorf("setters changed bytes outside offsets 12..15")
			}
		})
	}
}

// setU16 returns a copy of b with the big-endian 16-bit word at off set to v.
func setU16(b []byte, off int, v uint16) []byte {
	b = clone(b)
	b[off], b[off+1] = byte(v>>8), byte(v)
	return b
}

func TestParseCtrlInvalid(t *testing.T) {
	for typ := SCCRQ; typ <= SLI; typ++ {
		g := goldenCtrl[typ]
		n := len(g)
		tests := []struct {
			name string
			in   []byte
			want Reason
		}{
			{"empty", nil, ReasonTruncated},
			{"header_only_11", g[:11], ReasonTruncated},
			{"header_only_12", g[:12], ReasonTruncated},
			{"truncated_by_1", g[:n-1], ReasonTruncated},
			{"truncated_by_half", g[:n/2], ReasonTruncated},
			{"length_oversized", append(setU16(g, 0, uint16(n+4)), 0, 0, 0, 0), ReasonBadLength},
			{"length_undersized", setU16(g, 0, uint16(n-4)), ReasonBadLength},
			{"length_0", setU16(g, 0, 0), ReasonBadLength},
			{"length_1", setU16(g, 0, 1), ReasonBadLength},
			{"length_11", setU16(g, 0, 11), ReasonBadLength},
			{"length_12", setU16(g, 0, 12), ReasonBadLength},
			{"length_65535", setU16(g, 0, 65535), ReasonBadLength},
			{"bad_cookie", setU16(g, 6, 0x3c4e), ReasonBadCookie},
			{"cookie_byte_swapped", setU16(setU16(g, 4, 0x4d3c), 6, 0x2b1a), ReasonBadCookie},
			{"pptp_type_0", setU16(g, 2, 0), ReasonNotControl},
			{"pptp_type_2_management", setU16(g, 2, 2), ReasonNotControl},
			{"control_type_0", setU16(g, 8, 0), ReasonBadType},
			{"control_type_16", setU16(g, 8, 16), ReasonBadType},
			{"control_type_0x0107", setU16(g, 8, 0x0100|uint16(typ)), ReasonBadType},
			// Checks run in order: cookie, message class, type, length.
			{"bad_cookie_and_type", setU16(setU16(g, 4, 0), 8, 16), ReasonBadCookie},
			{"management_and_length", setU16(setU16(g, 2, 2), 0, 1), ReasonNotControl},
			{"type_16_and_length", setU16(setU16(g, 8, 16), 0, 1), ReasonBadType},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%v/%s", typ, tt.name), func(t *testing.T) {
				c, r := ParseCtrl(tt.in)
				if r != tt.want || c != nil {
					t.Errorf("ParseCtrl = (%d bytes, %v), want (nil, %v)", len(c), r, tt.want)
				}
			})
		}
	}
}

// A message of one type with the Length of another is a framing error.
func TestParseCtrlLengthOfOtherType(t *testing.T) {
	for typ := SCCRQ; typ <= SLI; typ++ {
		for other := SCCRQ; other <= SLI; other++ {
			if RFCLength(other) == RFCLength(typ) {
				continue
			}
			in := append(setU16(goldenCtrl[typ], 0, uint16(RFCLength(other))), make([]byte, 256)...)
			if _, r := ParseCtrl(in); r != ReasonBadLength {
				t.Errorf("%v with the Length of %v: reason %v, want %v", typ, other, r, ReasonBadLength)
			}
		}
	}
}

func TestRFCLength(t *testing.T) {
	want := map[MsgType]int{SCCRQ: 156, SCCRP: 156, StopCCRQ: 16, StopCCRP: 16, EchoRQ: 16,
		EchoRP: 20, OCRQ: 168, OCRP: 32, ICRQ: 220, ICRP: 24, ICCN: 28, CCRQ: 16, CDN: 148,
		WEN: 40, SLI: 24}
	for _, typ := range []MsgType{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 255, 0x100, 0xffff} {
		if got := RFCLength(typ); got != want[typ] {
			t.Errorf("RFCLength(%d) = %d, want %d", typ, got, want[typ])
		}
	}
}

func TestFields(t *testing.T) {
	type kinds struct{ At12, At14 FieldKind }
	tests := []struct {
		typ       MsgType
		want      kinds
		hasResult bool
	}{
		{0, kinds{NoField, NoField}, false},
		{SCCRQ, kinds{NoField, NoField}, false},
		{SCCRP, kinds{NoField, NoField}, false},
		{StopCCRQ, kinds{NoField, NoField}, false},
		{StopCCRP, kinds{NoField, NoField}, false},
		{EchoRQ, kinds{NoField, NoField}, false},
		{EchoRP, kinds{NoField, NoField}, false},
		{OCRQ, kinds{OwnCallID, NoField}, false},
		{OCRP, kinds{OwnCallID, PeerCallID}, true},
		{ICRQ, kinds{OwnCallID, NoField}, false},
		{ICRP, kinds{OwnCallID, PeerCallID}, true},
		{ICCN, kinds{PeerCallID, NoField}, false},
		{CCRQ, kinds{OwnCallID, NoField}, false},
		{CDN, kinds{OwnCallID, NoField}, false},
		{WEN, kinds{PeerCallID, NoField}, false},
		{SLI, kinds{PeerCallID, NoField}, false},
		{16, kinds{NoField, NoField}, false},
		{0xffff, kinds{NoField, NoField}, false},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String()+fmt.Sprint(uint16(tt.typ)), func(t *testing.T) {
			var got kinds
			got.At12, got.At14 = Fields(tt.typ)
			if got != tt.want {
				t.Errorf("Fields(%v) (-want +got):\n-%+v\n+%+v", tt.typ, tt.want, got)
			}
			if got := HasResult(tt.typ); got != tt.hasResult {
				t.Errorf("HasResult(%v) = %v, want %v", tt.typ, got, tt.hasResult)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	names := []string{"type-invalid", "SCCRQ", "SCCRP", "StopCCRQ", "StopCCRP", "EchoRQ", "EchoRP",
		"OCRQ", "OCRP", "ICRQ", "ICRP", "ICCN", "CCRQ", "CDN", "WEN", "SLI", "type-invalid"}
	for i, want := range names {
		if got := MsgType(i).String(); got != want {
			t.Errorf("MsgType(%d).String() = %q, want %q", i, got, want)
		}
	}
	reasons := map[Reason]string{ReasonNone: "none", ReasonTruncated: "truncated",
		ReasonBadCookie: "bad_cookie", ReasonNotControl: "not_control", ReasonBadType: "bad_type",
		ReasonBadLength: "bad_length", ReasonGREVersion: "gre_version", ReasonGREFlags: "gre_flags",
		ReasonGREProto: "gre_protocol", reasonCount: "unknown", 255: "unknown"}
	for r, want := range reasons {
		if got := r.String(); got != want {
			t.Errorf("Reason(%d).String() = %q, want %q", r, got, want)
		}
	}
}
