package nfq

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The hand-encoded verdict is the message go-nfqueue would send: the same
// nfgenmsg and attributes, marshalled by the netlink package.
func TestVerdictEncoding(t *testing.T) {
	w := newVerdictWriter(nil, nil, 0x1234, 0)
	for _, tc := range []struct {
		name    string
		verdict uint32
		setMark bool
		payload []byte
	}{
		{"accept", nfAccept, false, nil},
		{"drop", nfDrop, false, nil},
		{"mark", nfAccept, true, nil},
		{"payload aligned", nfAccept, false, bytes.Repeat([]byte{0xab}, 64)},
		{"payload unaligned and mark", nfAccept, true, bytes.Repeat([]byte{0xcd}, 61)},
		{"payload of one byte", nfAccept, false, []byte{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// dirty the buffer: padding must be written, not assumed zero
			for i := 32; i < 200; i++ {
				w.buf[i] = 0xff
			}
			w.n = 0
			w.encode(0xdeadbeef, tc.verdict, tc.setMark, 0x01020304, tc.payload)
			n := w.n
			if l := verdictLen(tc.setMark, tc.payload); l != n {
				t.Fatalf("verdictLen = %d, encoded %d", l, n)
			}
			vh := make([]byte, 8)
			binary.BigEndian.PutUint32(vh, tc.verdict)
			binary.BigEndian.PutUint32(vh[4:], 0xdeadbeef)
			attrs := []netlink.Attribute{{Type: nfqaVerdictHd, Data: vh}}
			if tc.setMark {
				attrs = append(attrs, netlink.Attribute{Type: nfqaMark, Data: []byte{1, 2, 3, 4}})
			}
			if tc.payload != nil {
				attrs = append(attrs, netlink.Attribute{Type: nfqaPayload, Data: tc.payload})
			}
			ad, err := netlink.MarshalAttributes(attrs)
			if err != nil {
				t.Fatal(err)
			}
			m := netlink.Message{
				Header: netlink.Header{Type: nfqnlMsgType, Flags: netlink.Request},
				Data:   append([]byte{unix.AF_INET, unix.NFNETLINK_V0, 0x12, 0x34}, ad...),
			}
			m.Header.Length = uint32(nlmsgHdrLen + len(m.Data))
			want, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if got := w.buf[:n]; !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%x\nwant\n%x", got, want)
			}
		})
	}
}

func TestVerdictEncodingAllocs(t *testing.T) {
	w := newVerdictWriter(nil, nil, 1, 0)
	pkt := make([]byte, 1400)
	if a := testing.AllocsPerRun(100, func() { w.n = 0; w.encode(7, nfAccept, true, 9, pkt) }); a != 0 {
		t.Fatalf("%v allocs per verdict", a)
	}
}
