package nfq

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// batchQueue returns a queue whose reader and verdict writer use one end of
// a datagram socket pair, and the other end, standing in for the kernel.
func batchQueue(t testing.TB) (*Runner, *queue, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "nfq")
	t.Cleanup(func() { f.Close(); unix.Close(fds[1]) })
	raw, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{cfg: Config{}.withDefaults()}
	r.cancel = func() {}
	q := &queue{num: 7, vw: newVerdictWriter(raw, 7), rd: newReader(raw), log: zap.NewNop()}
	return r, q, fds[1]
}

// packetDatagram is an NFQNL_MSG_PACKET as the kernel sends it.
func packetDatagram(t testing.TB, id uint32, mark uint32, payload []byte) []byte {
	t.Helper()
	hdr := []byte{0, 0, 0, 0, 0x08, 0x00, HookPrerouting}
	binary.BigEndian.PutUint32(hdr, id)
	m := []byte{0, 0, 0, 0}
	binary.BigEndian.PutUint32(m, mark)
	data := packetAttrs(t, []netlink.Attribute{
		{Type: nfqaPacketHdr, Data: hdr},
		{Type: nfqaMark, Data: m},
		{Type: nfqaIfIndexInDev, Data: []byte{0, 0, 0, 4}},
		{Type: nfqaPayload, Data: payload},
	})
	msg := netlink.Message{Header: netlink.Header{Type: nfqnlMsgPacket}, Data: data}
	msg.Header.Length = uint32(nlmsgHdrLen + len(data))
	b, err := msg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batchHandler drops packets starting with 'd', rewrites those starting
// with 'm' (and marks them), accepts the rest as they are.
func batchHandler(_ uint16, pkt []byte, mark uint32, _ Meta) (Verdict, uint32, bool) {
	switch pkt[0] {
	case 'd':
		return Drop, mark, false
	case 'm':
		pkt[1] = 'M'
		return Accept, mark | 0x100, true
	}
	return Accept, mark, false
}

// roundTrip queues dgs, lets the queue receive and answer them, and
// returns the number of datagrams of the receive and what was written back.
func roundTrip(t *testing.T, r *Runner, q *queue, kernel int, dgs [][]byte, out []byte) (int, [][]byte) {
	for _, dg := range dgs {
		if _, err := unix.Write(kernel, dg); err != nil {
			t.Fatal(err)
		}
	}
	n, err := q.rd.next()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r.datagram(q, batchHandler, q.rd.msg(i))
	}
	r.flush(q)
	var got [][]byte
	for {
		m, err := unix.Read(kernel, out)
		if err == unix.EAGAIN {
			return n, got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out[:m:m])
		out = out[m:]
	}
}

// A batch of packets is received with one call and answered with one
// write holding their verdicts in order, each as encode alone makes it.
func TestBatchRoundTrip(t *testing.T) {
	r, q, kernel := batchQueue(t)
	in := [][]byte{
		packetDatagram(t, 1, 0, []byte("accept")),
		packetDatagram(t, 2, 0, []byte("drop")),
		packetDatagram(t, 3, 5, []byte("mod")),
		packetDatagram(t, 4, 0, []byte("last")),
	}
	n, got := roundTrip(t, r, q, kernel, in, make([]byte, 1<<16))
	if n != len(in) || len(got) != 1 {
		t.Fatalf("received %d datagrams in one call, wrote %d datagrams; want %d and 1", n, len(got), len(in))
	}
	w := newVerdictWriter(nil, 7)
	w.encode(1, nfAccept, false, 0, nil)
	w.encode(2, nfDrop, false, 0, nil)
	w.encode(3, nfAccept, true, 0x105, []byte("mMd"))
	w.encode(4, nfAccept, false, 0, nil)
	if !bytes.Equal(got[0], w.buf[:w.n]) {
		t.Fatalf("verdicts\n%x\nwant\n%x", got[0], w.buf[:w.n])
	}
	want := Stats{Packets: 4, Dropped: 1, Modified: 1, Marked: 1}
	if st := r.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}

	// a refused verdict comes back as an NLMSG_ERROR in the next receive
	e := netlink.Message{Header: netlink.Header{Type: unix.NLMSG_ERROR}, Data: []byte{0xfe, 0xff, 0xff, 0xff}}
	e.Header.Length = nlmsgHdrLen + 4
	eb, _ := e.MarshalBinary()
	roundTrip(t, r, q, kernel, [][]byte{eb}, make([]byte, 1<<16))
	if st := r.Stats(); st.VerdictErrors != 1 {
		t.Errorf("VerdictErrors = %d, want 1", st.VerdictErrors)
	}
}

// Verdicts that do not fit the buffer together go in several writes, in
// order.
func TestBatchLargeVerdicts(t *testing.T) {
	r, q, kernel := batchQueue(t)
	var in [][]byte
	for i := range 3 {
		p := bytes.Repeat([]byte{'m'}, 50000)
		p[2] = byte(i)
		in = append(in, packetDatagram(t, uint32(10+i), 0, p))
	}
	unix.SetsockoptInt(kernel, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	unix.SetsockoptInt(kernel, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	n, got := roundTrip(t, r, q, kernel, in, make([]byte, 1<<20))
	if n != 3 || len(got) != 2 {
		t.Fatalf("received %d datagrams, wrote %d; want 3 and 2", n, len(got))
	}
	var ids []uint32
	for _, dg := range got {
		for len(dg) >= nlmsgHdrLen {
			l := int(binary.NativeEndian.Uint32(dg))
			ids = append(ids, binary.BigEndian.Uint32(dg[28:]))
			if l != verdictLen(true, make([]byte, 50000)) || dg[verdictHdrLen+8+nlaHdrLen+1] != 'M' {
				t.Fatalf("verdict of %d bytes, payload %q", l, dg[44:48])
			}
			dg = dg[l:]
		}
	}
	if len(ids) != 3 || ids[0] != 10 || ids[1] != 11 || ids[2] != 12 {
		t.Fatalf("verdicts for %v, want 10 11 12", ids)
	}
}

// Receiving a batch, handling it and writing its verdicts allocates
// nothing.
func TestBatchAllocs(t *testing.T) {
	r, q, kernel := batchQueue(t)
	var in [][]byte
	for i := range recvBatch {
		in = append(in, packetDatagram(t, uint32(i), 0, bytes.Repeat([]byte{"adm"[i%3]}, 64)))
	}
	out := make([]byte, 1<<16)
	a := testing.AllocsPerRun(50, func() {
		for _, dg := range in {
			unix.Write(kernel, dg)
		}
		n, err := q.rd.next()
		if err != nil || n != len(in) {
			panic(err)
		}
		for i := range n {
			r.datagram(q, batchHandler, q.rd.msg(i))
		}
		r.flush(q)
		if _, err := unix.Read(kernel, out); err != nil {
			panic(err)
		}
	})
	if a != 0 {
		t.Fatalf("%v allocs per batch", a)
	}
}
