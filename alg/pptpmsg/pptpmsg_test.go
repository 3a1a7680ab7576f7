package pptpmsg

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"testing/iotest"
)

// Every message the lab builds has the header RFC 2637 requires and the
// length of its type, and reads back unchanged from a stream that hands
// out one byte at a time.
func TestBuildRead(t *testing.T) {
	msgs := []struct {
		m      []byte
		typ    uint16
		length int
	}{
		{NewSCCRQ("pns"), SCCRQ, 156},
		{NewSCCRP("pac"), SCCRP, 156},
		{NewOCRQ(7, 1), OCRQ, 168},
		{NewOCRP(9, 7, 1), OCRP, 32},
		{NewCCRQ(7), CCRQ, 16},
		{NewCDN(9, 3), CDN, 148},
		{NewStopCCRQ(), StopCCRQ, 16},
		{NewStopCCRP(), StopCCRP, 16},
		{NewEchoRQ(0xdeadbeef), EchoRQ, 16},
		{NewEchoRP([]byte{1, 2, 3, 4}), EchoRP, 20},
	}
	var stream bytes.Buffer
	for _, c := range msgs {
		if len(c.m) != c.length || int(binary.BigEndian.Uint16(c.m)) != c.length {
			t.Errorf("%s: length %d, field %d, want %d", Name(c.typ), len(c.m), binary.BigEndian.Uint16(c.m), c.length)
		}
		if Type(c.m) != c.typ || Field(c.m, 2) != 1 || binary.BigEndian.Uint32(c.m[4:]) != Cookie {
			t.Errorf("%s: bad header % x", Name(c.typ), c.m[:HeaderLen])
		}
		stream.Write(c.m)
	}
	r := iotest.OneByteReader(&stream)
	for _, c := range msgs {
		m, err := Read(r)
		if err != nil {
			t.Fatalf("read %s: %v", Name(c.typ), err)
		}
		if !bytes.Equal(m, c.m) {
			t.Errorf("read %s: got % x", Name(c.typ), m)
		}
	}
	if _, err := Read(r); err != io.EOF {
		t.Errorf("after the last message: %v, want EOF", err)
	}
}

// The fields the PNS and PAC read from each other's replies.
func TestFields(t *testing.T) {
	ocrp := NewOCRP(0x1234, 0x5678, 1)
	if Field(ocrp, 12) != 0x1234 || Field(ocrp, 14) != 0x5678 || Byte(ocrp, 16) != 1 {
		t.Errorf("OCRP: Call ID %#x, PeerCallID %#x, result %d", Field(ocrp, 12), Field(ocrp, 14), Byte(ocrp, 16))
	}
	if cdn := NewCDN(0x1234, 3); Field(cdn, 12) != 0x1234 || Byte(cdn, 14) != 3 {
		t.Errorf("CDN: % x", cdn[:16])
	}
	if rp := NewEchoRP(NewEchoRQ(0xdeadbeef)[HeaderLen:]); binary.BigEndian.Uint32(rp[12:]) != 0xdeadbeef || rp[16] != 1 {
		t.Errorf("Echo-Reply: % x", rp)
	}
	if Byte(NewSCCRP("x"), 14) != 1 {
		t.Error("SCCRP result not OK")
	}
	// A short message reads as zeros, not a panic.
	if Field([]byte{1}, 12) != 0 || Byte(nil, 3) != 0 {
		t.Error("short message: fields not zero")
	}
	if Name(99) != "type 99" || Name(OCRQ) != "OCRQ" {
		t.Errorf("names: %q %q", Name(99), Name(OCRQ))
	}
}

func TestReadBad(t *testing.T) {
	bad := NewCCRQ(1)
	binary.BigEndian.PutUint32(bad[4:], 0x12345678)
	long := NewCCRQ(1)
	binary.BigEndian.PutUint16(long, MaxLen+1)
	for name, b := range map[string][]byte{
		"cookie":    bad,
		"too long":  long,
		"too short": {0, 4, 0, 1, 0x1A, 0x2B, 0x3C, 0x4D, 0, 12, 0, 0},
		"cut short": NewCDN(1, 3)[:100],
	} {
		if _, err := Read(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Msg builds every type at its RFC 2637 length with the fields in place.
func TestMsg(t *testing.T) {
	want := map[uint16]int{SCCRQ: 156, SCCRP: 156, StopCCRQ: 16, StopCCRP: 16, EchoRQ: 16, EchoRP: 20,
		OCRQ: 168, OCRP: 32, ICRQ: 220, ICRP: 24, ICCN: 28, CCRQ: 16, CDN: 148, WEN: 40, SLI: 24}
	for typ := uint16(1); typ <= 15; typ++ {
		m := Msg(typ, 0x1234, 0xabcd)
		if len(m) != want[typ] || int(Field(m, 0)) != want[typ] {
			t.Errorf("%s: length %d, field %d, want %d", Name(typ), len(m), Field(m, 0), want[typ])
		}
		if Type(m) != typ || Field(m, 2) != 1 || binary.BigEndian.Uint32(m[4:]) != Cookie {
			t.Errorf("%s: bad header % x", Name(typ), m[:HeaderLen])
		}
		if Field(m, 12) != 0x1234 || Field(m, 14) != 0xabcd {
			t.Errorf("%s: fields % x", Name(typ), m[12:16])
		}
	}
	if Len(0) != 0 || Len(16) != 0 {
		t.Errorf("Len outside 1..15: %d, %d", Len(0), Len(16))
	}
}

// GRE gives the header of RFC 2637 section 4.1 byte for byte.
func TestGRE(t *testing.T) {
	got := GRE(0x1234, 7, []byte{0xff, 0x03, 0xc0, 0x21})
	want := []byte{0x30, 0x01, 0x88, 0x0b, 0x00, 0x04, 0x12, 0x34, 0, 0, 0, 7, 0xff, 0x03, 0xc0, 0x21}
	if !bytes.Equal(got, want) {
		t.Fatalf("GRE = % x, want % x", got, want)
	}
}
