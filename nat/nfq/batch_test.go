package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

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
	q := &queue{num: 7, vw: newVerdictWriter(raw, f, 7, time.Second), rd: newReader(raw), log: zap.NewNop()}
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
	w := newVerdictWriter(nil, nil, 7, 0)
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

// ackDatagram is the kernel's NLMSG_ERROR answering a message of sequence
// seq: errno 0 acknowledges it.
func ackDatagram(t testing.TB, seq uint32, errno unix.Errno) []byte {
	t.Helper()
	data := make([]byte, 4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(data, uint32(-int32(errno)))
	binary.NativeEndian.PutUint32(data[4:], nlmsgHdrLen)
	binary.NativeEndian.PutUint16(data[8:], nfqnlMsgConfig)
	binary.NativeEndian.PutUint32(data[4+8:], seq)
	m := netlink.Message{Header: netlink.Header{Type: unix.NLMSG_ERROR, Length: uint32(nlmsgHdrLen + len(data))}, Data: data}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Packets can reach the socket before the bind's acknowledgement: the loop
// handles them in order and hands the acknowledgement to Open once; a
// refused bind comes back as its errno.
func TestBindAck(t *testing.T) {
	r, q, kernel := batchQueue(t)
	q.bound = make(chan error, 1)
	in := [][]byte{
		packetDatagram(t, 1, 0, []byte("early")),
		ackDatagram(t, bindSeq, 0),
		packetDatagram(t, 2, 0, []byte("late")),
		ackDatagram(t, bindSeq, 0), // a second one is not the bind's
	}
	n, got := roundTrip(t, r, q, kernel, in, make([]byte, 1<<16))
	if n != len(in) || len(got) != 1 {
		t.Fatalf("received %d datagrams, wrote %d", n, len(got))
	}
	select {
	case err := <-q.bound:
		if err != nil {
			t.Fatalf("bind answer %v, want nil", err)
		}
	default:
		t.Fatal("no bind answer")
	}
	if st := r.Stats(); st.Packets != 2 || st.VerdictErrors != 0 {
		t.Errorf("Stats = %+v", st)
	}

	r, q, kernel = batchQueue(t)
	q.bound = make(chan error, 1)
	roundTrip(t, r, q, kernel, [][]byte{ackDatagram(t, bindSeq, unix.EPERM)}, make([]byte, 1<<16))
	if err := <-q.bound; !errors.Is(err, unix.EPERM) {
		t.Fatalf("bind answer %v, want EPERM", err)
	}
	if st := r.Stats(); st.VerdictErrors != 0 {
		t.Errorf("refused bind counted as a verdict error: %+v", st)
	}
}

// A panicking handler drops its packet, is counted, and the rest of the
// batch goes on.
func TestBatchPanic(t *testing.T) {
	r, q, kernel := batchQueue(t)
	in := [][]byte{packetDatagram(t, 1, 0, []byte("p")), packetDatagram(t, 2, 0, []byte("ok"))}
	for _, dg := range in {
		unix.Write(kernel, dg)
	}
	n, err := q.rd.next()
	if err != nil {
		t.Fatal(err)
	}
	h := func(q uint16, pkt []byte, mark uint32, m Meta) (Verdict, uint32, bool) {
		if pkt[0] == 'p' {
			panic("handler bug")
		}
		return batchHandler(q, pkt, mark, m)
	}
	for i := range n {
		r.datagram(q, h, q.rd.msg(i))
	}
	r.flush(q)
	out := make([]byte, 1<<16)
	m, err := unix.Read(kernel, out)
	if err != nil {
		t.Fatal(err)
	}
	w := newVerdictWriter(nil, nil, 7, 0)
	w.encode(1, nfDrop, false, 0, nil)
	w.encode(2, nfAccept, false, 0, nil)
	if !bytes.Equal(out[:m], w.buf[:w.n]) {
		t.Fatalf("verdicts\n%x\nwant\n%x", out[:m], w.buf[:w.n])
	}
	if st := r.Stats(); st.Panics != 1 || st.Dropped != 1 || st.Packets != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

// fillVerdictSide writes junk from the queue's socket until the kernel
// side's receive queue is full, and returns how many.
func fillVerdictSide(t *testing.T, q *queue) (n int) {
	t.Helper()
	var err error
	q.vw.raw.Control(func(fd uintptr) {
		for ; ; n++ {
			if _, err = unix.Write(int(fd), []byte("junk")); err != nil {
				return
			}
		}
	})
	if err != unix.EAGAIN {
		t.Fatal(err)
	}
	return n
}

// A batch that would block waits for room, up to the write timeout, and
// a timed-out one leaves the socket usable: the wait's deadline is cleared.
func TestBatchWouldBlock(t *testing.T) {
	r, q, kernel := batchQueue(t)
	out := make([]byte, 1<<16)
	handle := func(ids ...uint32) {
		for _, id := range ids {
			unix.Write(kernel, packetDatagram(t, id, 0, []byte("a")))
		}
		n, err := q.rd.next()
		if err != nil || n != len(ids) {
			t.Fatal(n, err)
		}
		for i := range n {
			r.datagram(q, batchHandler, q.rd.msg(i))
		}
	}
	drain := func() (junk int, verdicts [][]byte) {
		for {
			m, err := unix.Read(kernel, out)
			if err == unix.EAGAIN {
				return
			}
			if string(out[:m]) == "junk" {
				junk++
			} else {
				verdicts = append(verdicts, append([]byte(nil), out[:m]...))
			}
		}
	}

	// the kernel side reads late: the verdicts wait and then go
	q.vw.timeout = 5 * time.Second
	handle(1, 2)
	filled := fillVerdictSide(t, q)
	flushed := make(chan struct{})
	go func() { r.flush(q); close(flushed) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-flushed:
		t.Fatal("flush did not wait for room")
	default:
	}
	var vs [][]byte
	for junk, end := 0, time.Now().Add(10*time.Second); junk < filled || len(vs) == 0; {
		if time.Now().After(end) {
			t.Fatalf("drained %d of %d, %d verdict writes", junk, filled, len(vs))
		}
		j, v := drain()
		junk, vs = junk+j, append(vs, v...)
	}
	<-flushed
	w := newVerdictWriter(nil, nil, 7, 0)
	w.encode(1, nfAccept, false, 0, nil)
	w.encode(2, nfAccept, false, 0, nil)
	if len(vs) != 1 || !bytes.Equal(vs[0], w.buf[:w.n]) {
		t.Fatalf("verdicts %x, want one write %x", vs, w.buf[:w.n])
	}

	// nobody reads: the batch times out and is counted
	q.vw.timeout = 20 * time.Millisecond
	handle(3)
	fillVerdictSide(t, q)
	r.flush(q)
	if st := r.Stats(); st.VerdictErrors != 1 {
		t.Fatalf("VerdictErrors = %d, want 1", st.VerdictErrors)
	}
	drain()
	time.Sleep(2 * q.vw.timeout) // past the deadline of the wait
	handle(4)
	r.flush(q)
	if _, vs := drain(); len(vs) != 1 || r.Stats().VerdictErrors != 1 {
		t.Fatalf("after a timeout: %d verdict writes, stats %+v", len(vs), r.Stats())
	}
}
