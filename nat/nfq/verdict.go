package nfq

import (
	"encoding/binary"
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// The verdict message, encoded by hand into a per-queue buffer and written
// straight to the queue's netlink socket: go-nfqueue's SetVerdict and
// SetVerdictWithOption allocate six to ten times per packet (header and
// attribute buffers, option closures, the marshalled message) and set a
// write deadline through the poller on every call. Layout (netlink
// headers host-endian, nfnetlink payload big-endian):
//
//	nlmsghdr      len, type NFNL_SUBSYS_QUEUE<<8|NFQNL_MSG_VERDICT, flags NLM_F_REQUEST, seq, pid
//	nfgenmsg      family AF_INET, version 0, res_id (queue number, big-endian)
//	NFQA_VERDICT_HDR  verdict, packet id
//	NFQA_MARK     (when the mark changes)
//	NFQA_PAYLOAD  (when the packet was rewritten), padded to 4 bytes
const (
	nlmsgHdrLen   = 16
	nfgenHdrLen   = 4
	nlaHdrLen     = 4
	nfqaVerdictHd = 2
	nfqaMark      = 3
	nfqaPayload   = 10
	nfqnlMsgType  = 3<<8 | 1 // NFNL_SUBSYS_QUEUE, NFQNL_MSG_VERDICT
	nfAccept      = 1
	nfDrop        = 0

	verdictBufLen = nlmsgHdrLen + nfgenHdrLen + nlaHdrLen + 8 + nlaHdrLen + 4 + nlaHdrLen + MaxPacketLen + 3
)

// errWouldBlock: the socket's send buffer is full; the caller falls back
// to go-nfqueue's blocking send, bounded by the write timeout.
var errWouldBlock = errors.New("nfq: verdict would block")

// verdictWriter encodes and sends verdicts for one queue. It is used only
// on that queue's receive goroutine, so it needs no lock.
type verdictWriter struct {
	buf   []byte
	n     int
	err   error
	raw   syscall.RawConn
	write func(fd uintptr) bool // bound once: a method value per call would allocate
}

func newVerdictWriter(raw syscall.RawConn, queue uint16) *verdictWriter {
	w := &verdictWriter{buf: make([]byte, verdictBufLen), raw: raw}
	b := w.buf
	binary.NativeEndian.PutUint16(b[4:], nfqnlMsgType)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	b[16] = unix.AF_INET
	b[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], queue)
	binary.NativeEndian.PutUint16(b[20:], nlaHdrLen+8)
	binary.NativeEndian.PutUint16(b[22:], nfqaVerdictHd)
	w.write = w.writeFD
	return w
}

// encode builds the message for id into buf and returns its length.
// payload is nil unless the packet was rewritten; setMark adds NFQA_MARK.
func (w *verdictWriter) encode(id uint32, verdict uint32, setMark bool, mark uint32, payload []byte) int {
	b := w.buf
	binary.BigEndian.PutUint32(b[24:], verdict)
	binary.BigEndian.PutUint32(b[28:], id)
	n := 32
	if setMark {
		binary.NativeEndian.PutUint16(b[n:], nlaHdrLen+4)
		binary.NativeEndian.PutUint16(b[n+2:], nfqaMark)
		binary.BigEndian.PutUint32(b[n+4:], mark)
		n += 8
	}
	if payload != nil {
		binary.NativeEndian.PutUint16(b[n:], uint16(nlaHdrLen+len(payload)))
		binary.NativeEndian.PutUint16(b[n+2:], nfqaPayload)
		n += nlaHdrLen
		n += copy(b[n:], payload)
		for n%4 != 0 {
			b[n] = 0
			n++
		}
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	return n
}

// send writes the message encode built, without blocking.
func (w *verdictWriter) send(n int) error {
	w.n, w.err = n, nil
	if err := w.raw.Write(w.write); err != nil {
		return err
	}
	return w.err
}

func (w *verdictWriter) writeFD(fd uintptr) bool {
	for {
		_, err := unix.Write(int(fd), w.buf[:w.n])
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			w.err = errWouldBlock
		default:
			w.err = err
		}
		return true
	}
}

// fits reports whether a payload of n bytes fits the buffer.
func fits(n int) bool { return n <= MaxPacketLen }
