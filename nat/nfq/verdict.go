package nfq

import (
	"encoding/binary"
	"errors"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The verdict messages, encoded by hand into a per-queue buffer and written
// straight to the queue's netlink socket: go-nfqueue's SetVerdict and
// SetVerdictWithOption allocate six to ten times per packet (header and
// attribute buffers, option closures, the marshalled message) and set a
// write deadline through the poller on every call. The verdicts of one
// received batch go in one write(2): the kernel (netlink_rcv_skb) handles
// every message of the datagram in order, and answers a refused one with
// an NLMSG_ERROR of its own, so one bad verdict does not lose the others.
// NFQNL_MSG_VERDICT_BATCH would be shorter but carries neither payload
// nor per-packet marks. Layout of each message (netlink headers
// host-endian, nfnetlink payload big-endian):
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

	verdictHdrLen = nlmsgHdrLen + nfgenHdrLen + nlaHdrLen + 8
	verdictMaxLen = verdictHdrLen + nlaHdrLen + 4 + nlaHdrLen + MaxPacketLen + 3
	// verdictBufLen holds a batch of small verdicts, and at least one of
	// the largest; a verdict that does not fit flushes the batch first.
	verdictBufLen = 2 * verdictMaxLen
)

// errWouldBlock: the socket's send buffer is full.
var errWouldBlock = errors.New("nfq: verdict would block")

// deadliner sets the write deadline of the socket behind a RawConn.
type deadliner interface{ SetWriteDeadline(time.Time) error }

// verdictWriter encodes and sends verdicts for one queue. It is used only
// on that queue's receive goroutine, so it needs no lock.
type verdictWriter struct {
	buf     []byte
	n       int // bytes of the batch encoded so far
	count   int // verdicts in the batch
	queue   uint16
	err     error
	wait    bool // writeFD: on EAGAIN, let the poller wait for room
	raw     syscall.RawConn
	dl      deadliner
	timeout time.Duration
	write   func(fd uintptr) bool // bound once: a method value per call would allocate
}

func newVerdictWriter(raw syscall.RawConn, dl deadliner, queue uint16, timeout time.Duration) *verdictWriter {
	w := &verdictWriter{buf: make([]byte, verdictBufLen), queue: queue, raw: raw, dl: dl, timeout: timeout}
	w.write = w.writeFD
	return w
}

// verdictLen is the encoded length of a verdict.
func verdictLen(setMark bool, payload []byte) int {
	n := verdictHdrLen
	if setMark {
		n += nlaHdrLen + 4
	}
	if payload != nil {
		n += (nlaHdrLen + len(payload) + 3) &^ 3
	}
	return n
}

// room reports whether a verdict of n bytes fits after the batch.
func (w *verdictWriter) room(n int) bool { return w.n+n <= len(w.buf) }

// encode appends the message for id to the batch; the caller checked room.
// payload is nil unless the packet was rewritten; setMark adds NFQA_MARK.
func (w *verdictWriter) encode(id uint32, verdict uint32, setMark bool, mark uint32, payload []byte) {
	b := w.buf[w.n:]
	binary.NativeEndian.PutUint16(b[4:], nfqnlMsgType)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint64(b[8:], 0) // seq, pid
	b[16] = unix.AF_INET
	b[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], w.queue)
	binary.NativeEndian.PutUint16(b[20:], nlaHdrLen+8)
	binary.NativeEndian.PutUint16(b[22:], nfqaVerdictHd)
	binary.BigEndian.PutUint32(b[24:], verdict)
	binary.BigEndian.PutUint32(b[28:], id)
	n := verdictHdrLen
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
	w.n += n
	w.count++
}

// send writes the batch and empties it. It does not block; if the socket's
// buffer is full it waits for room through the poller, up to the timeout,
// on a deadline of the socket's own that it clears again: verdicts lost
// would leave their packets queued until the socket closes.
func (w *verdictWriter) send() error {
	w.err = nil
	err := w.raw.Write(w.write)
	if err == nil && w.err == errWouldBlock {
		err = w.sendWait()
	}
	w.n, w.count = 0, 0
	if err != nil {
		return err
	}
	return w.err
}

func (w *verdictWriter) sendWait() error {
	if err := w.dl.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return err
	}
	w.err, w.wait = nil, true
	err := w.raw.Write(w.write)
	w.wait = false
	if derr := w.dl.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return err
}

// writeFD writes the batch. A raw system call: the socket is non-blocking,
// but the kernel forwards the accepted packets inside the call, which can
// outlast the 20 µs after which the runtime hands a P in a system call to
// another thread; taking it back on return costs context switches (10 to 25 %
// fewer packets/s with syscall.Syscall in the lab).
func (w *verdictWriter) writeFD(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.buf[0])), uintptr(w.n))
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if w.wait {
				return false
			}
			w.err = errWouldBlock
		default:
			w.err = e
		}
		return true
	}
}
