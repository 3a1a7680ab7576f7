package alg

import (
	"bytes"
	"fmt"
	"testing"
)

// greWant is what the accessors of a parsed GRE header return.
type greWant struct {
	HeaderLen     int
	HasSeq        bool
	HasAck        bool
	CallID        uint16
	PayloadLength int
	Seq, Ack      uint32
	Payload       []byte
}

func greGot(g GRE) greWant {
	w := greWant{HeaderLen: g.HeaderLen(), HasSeq: g.HasSeq(), HasAck: g.HasAck(),
		CallID: g.CallID(), PayloadLength: g.PayloadLength(), Payload: g.Payload()}
	if w.HasSeq {
		w.Seq = g.Seq()
	}
	if w.HasAck {
		w.Ack = g.Ack()
	}
	return w
}

func TestParseGREValid(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want greWant
	}{
		{"seq_and_ack_16", greBoth, greWant{16, true, true, 0x1234, 4, 7, 5, []byte{0xff, 0x03, 0xc0, 0x21}}},
		{"seq_only_12", greSeqOnly, greWant{12, true, false, 0xabcd, 2, 0xffffffff, 0, []byte{0x00, 0xfd}}},
		{"ack_only_12", greAckOnly, greWant{12, false, true, 0x0001, 0, 0, 0x80000000, []byte{}}},
		{"neither_8", greNeither, greWant{8, false, false, 0xfffe, 0, 0, 0, []byte{}}},
		{"padding_cut", grePadded, greWant{12, true, false, 0x0000, 2, 1, 0, []byte{0x00, 0xfd}}},
		// Payload Length larger than the data: Payload is what is there.
		{"payload_length_beyond_data", setU16(greBoth, 4, 100), greWant{16, true, true, 0x1234, 100, 7, 5, []byte{0xff, 0x03, 0xc0, 0x21}}},
		{"header_only", greBoth[:16], greWant{16, true, true, 0x1234, 4, 7, 5, []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := clone(tt.in)
			g, r := ParseGRE(in)
			if r != ReasonNone {
				t.Fatalf("ParseGRE: reason %v, want none", r)
			}
			if len(g) != len(in) || &g[0] != &in[0] {
				t.Errorf("ParseGRE view: %d bytes, want all %d bytes of the input, not a copy", len(g), len(in))
			}
			got := greGot(g)
			if got.HeaderLen != tt.want.HeaderLen || got.HasSeq != tt.want.HasSeq || got.HasAck != tt.want.HasAck ||
				got.CallID != tt.want.CallID || got.PayloadLength != tt.want.PayloadLength ||
				got.Seq != tt.want.Seq || got.Ack != tt.want.Ack || !bytes.Equal(got.Payload, tt.want.Payload) {
				t.Errorf("accessors (-want +got):\n-%+v\n+%+v", tt.want, got)
			}

			g.SetCallID(0x4321)
			if g.CallID() != 0x4321 || in[6] != 0x43 || in[7] != 0x21 {
				t.Errorf("after SetCallID(0x4321): CallID %#x, bytes % x", g.CallID(), in[6:8])
			}
			want := setU16(tt.in, 6, 0x4321)
			if !bytes.Equal(in, want) {
				t.Errorf("SetCallID changed other bytes:\n-% x\n+% x", want, in)
			}
		})
	}
}

func TestParseGREInvalid(t *testing.T) {
	with := func(b []byte, off int, v byte) []byte {
		b = clone(b)
		b[off] = v
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want Reason
	}{
		{"gre_v0", with(greBoth, 1, 0x80), ReasonGREVersion},
		{"gre_v0_plain", []byte{0x00, 0x00, 0x08, 0x00, 0x45, 0, 0, 20}, ReasonGREVersion},
		{"gre_v0_key_ppp", with(greNeither, 1, 0x00), ReasonGREVersion},
		{"C_checksum", with(greBoth, 0, 0x30|0x80), ReasonGREFlags},
		{"R_routing", with(greBoth, 0, 0x30|0x40), ReasonGREFlags},
		{"s_strict_route", with(greBoth, 0, 0x30|0x08), ReasonGREFlags},
		{"K_missing", with(greBoth, 0, 0x10), ReasonGREFlags},
		{"K_missing_no_seq", with(greNeither, 0, 0x00), ReasonGREFlags},
		{"proto_ipv4", setU16(greBoth, 2, 0x0800), ReasonGREProto},
		{"proto_transparent_ethernet", setU16(greBoth, 2, 0x6558), ReasonGREProto},
		{"proto_ppp_swapped", setU16(greBoth, 2, 0x0b88), ReasonGREProto},
		// Version is checked before flags, flags before protocol.
		{"v0_with_C", with(with(greBoth, 0, 0xb0), 1, 0x80), ReasonGREVersion},
		{"C_with_bad_proto", setU16(with(greBoth, 0, 0xb0), 2, 0x0800), ReasonGREFlags},
	}
	for v := byte(2); v <= 7; v++ {
		tests = append(tests, struct {
			name string
			in   []byte
			want Reason
		}{fmt.Sprintf("version_%d", v), with(greBoth, 1, 0x80|v), ReasonGREVersion})
	}
	for recur := byte(1); recur <= 7; recur++ {
		tests = append(tests, struct {
			name string
			in   []byte
			want Reason
		}{fmt.Sprintf("recur_%d", recur), with(greBoth, 0, 0x30|recur), ReasonGREFlags})
	}
	for _, bit := range []byte{0x08, 0x10, 0x20, 0x40} {
		tests = append(tests, struct {
			name string
			in   []byte
			want Reason
		}{fmt.Sprintf("flags_%#02x", bit), with(greBoth, 1, 0x81|bit), ReasonGREFlags})
	}
	for _, g := range []struct {
		name string
		b    []byte
	}{{"both", greBoth}, {"seq", greSeqOnly}, {"ack", greAckOnly}, {"neither", greNeither}} {
		hl := GRE(g.b).HeaderLen()
		for n := 0; n < hl; n++ {
			tests = append(tests, struct {
				name string
				in   []byte
				want Reason
			}{fmt.Sprintf("%s_truncated_%d", g.name, n), g.b[:n], ReasonTruncated})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, r := ParseGRE(tt.in)
			if r != tt.want || g != nil {
				t.Errorf("ParseGRE(% x) = (%d bytes, %v), want (nil, %v)", tt.in, len(g), r, tt.want)
			}
		})
	}
}

// Every truncation of the 16-byte form, 0..15 bytes, is truncated; 16 is not.
func TestParseGRETruncatedEveryLength(t *testing.T) {
	for n := 0; n <= 16; n++ {
		_, r := ParseGRE(greBoth[:n])
		want := ReasonTruncated
		if n == 16 {
			want = ReasonNone
		}
		if r != want {
			t.Errorf("ParseGRE(%d bytes): %v, want %v", n, r, want)
		}
	}
}
