package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The receive side. go-nfqueue's loop receives through mdlayher/netlink,
// which peeks at each datagram for its size before reading it, allocates
// the buffer and a Message per packet; the library then copies the payload
// twice and allocates a pointer per attribute. The queue's goroutine here
// reads the socket itself: up to recvBatch datagrams (one packet each) per
// recvmmsg(2) into buffers allocated once per queue, the attributes parsed
// in place, the payload handled (and rewritten) where it lies, the batch's
// verdicts written together before the next receive. Closing the socket
// ends the wait.

const (
	nfqnlMsgPacket    = 3<<8 | 0 // NFNL_SUBSYS_QUEUE, NFQNL_MSG_PACKET
	nfqaPacketHdr     = 1
	nfqaIfIndexInDev  = 5
	nfqaIfIndexOutDev = 6
	nlaTypeMask       = 0x3fff
	// recvSlotLen holds a whole packet of the kernel's largest copy range
	// (65531) and its attributes, so no datagram is ever truncated (a
	// truncated one would leave its packet queued with no verdict). Pages
	// of a slot are only touched as far as packets reach.
	recvSlotLen = 1<<16 + 4096
	// recvBatch is how many packets one receive takes at most: enough to
	// spread the system calls over a burst, few enough that the first
	// packet's verdict is not held long.
	recvBatch = 16
)

// packetMsg is what the handler needs of one queued packet.
type packetMsg struct {
	id      uint32
	hasID   bool
	mark    uint32
	meta    Meta
	payload []byte // nil when absent
}

// parsePacket reads an NFQNL_MSG_PACKET's nfgenmsg and attributes. It
// reports false for anything else or anything malformed.
func parsePacket(m []byte) (p packetMsg, ok bool) {
	if len(m) < nfgenHdrLen {
		return p, false
	}
	b := m[nfgenHdrLen:]
	for len(b) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if l < nlaHdrLen || l > len(b) {
			return p, false
		}
		d := b[nlaHdrLen:l]
		switch t {
		case nfqaPacketHdr:
			if len(d) < 7 {
				return p, false
			}
			p.id, p.hasID, p.meta.Hook = binary.BigEndian.Uint32(d), true, d[6]
		case nfqaMark:
			if len(d) < 4 {
				return p, false
			}
			p.mark = binary.BigEndian.Uint32(d)
		case nfqaIfIndexInDev:
			if len(d) < 4 {
				return p, false
			}
			p.meta.InDev, p.meta.HasInDev = binary.BigEndian.Uint32(d), true
		case nfqaIfIndexOutDev:
			if len(d) < 4 {
				return p, false
			}
			p.meta.OutDev = binary.BigEndian.Uint32(d)
		case nfqaPayload:
			p.payload = d[:len(d):len(d)]
		}
		a := (l + 3) &^ 3
		if a >= len(b) {
			break
		}
		b = b[a:]
	}
	return p, true
}

// mmsghdr is struct mmsghdr: the Go layout matches C's on 32 and 64 bits.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// reader receives one queue's datagrams, on its receive goroutine only.
type reader struct {
	buf  []byte // recvBatch slots of recvSlotLen
	iov  []unix.Iovec
	msgs []mmsghdr
	n    int // datagrams of the last receive
	err  error
	raw  syscall.RawConn
	read func(fd uintptr) bool // bound once: a method value per call would allocate
}

func newReader(raw syscall.RawConn) *reader {
	rd := &reader{
		buf:  make([]byte, recvBatch*recvSlotLen),
		iov:  make([]unix.Iovec, recvBatch),
		msgs: make([]mmsghdr, recvBatch),
		raw:  raw,
	}
	for i := range rd.msgs {
		rd.iov[i].Base = &rd.buf[i*recvSlotLen]
		rd.iov[i].SetLen(recvSlotLen)
		rd.msgs[i].hdr.Iov = &rd.iov[i]
		rd.msgs[i].hdr.SetIovlen(1)
	}
	rd.read = rd.readFD
	return rd
}

// recvmmsg takes what is queued on fd, up to recvBatch datagrams, without
// blocking: a raw system call, as for the verdicts' write (verdict.go).
func (rd *reader) recvmmsg(fd uintptr) (int, error) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&rd.msgs[0])), uintptr(len(rd.msgs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}

func (rd *reader) readFD(fd uintptr) bool {
	n, err := rd.recvmmsg(fd)
	if err == unix.EAGAIN {
		return false // wait for the poller
	}
	rd.n, rd.err = n, err
	return true
}

// next blocks until at least one datagram is queued and receives the
// batch; msg then returns each.
func (rd *reader) next() (int, error) {
	if err := rd.raw.Read(rd.read); err != nil {
		return 0, err
	}
	if rd.err != nil {
		return 0, rd.err
	}
	return rd.n, nil
}

// msg returns datagram i of the last receive.
func (rd *reader) msg(i int) []byte {
	n := min(int(rd.msgs[i].len), recvSlotLen)
	return rd.buf[i*recvSlotLen : i*recvSlotLen+n]
}

// serve is the queue's receive loop, the only reader of its socket from
// the bind on. It returns when the runner stops (closing the socket ends
// the wait) or the socket fails for good.
func (r *Runner) serve(q *queue, h Handler) {
	defer r.wg.Done()
	for {
		n, err := q.rd.next()
		if err != nil {
			switch {
			case r.stopping():
				return
			case errors.Is(err, unix.ENOBUFS):
				r.noBuffers.Add(1)
				q.rateLimited(zap.WarnLevel, "receive buffer overrun, kernel dropped packets")
				continue
			}
			r.fail(fmt.Errorf("queue %d: receive: %w", q.num, os.NewSyscallError("recvmmsg", err)))
			return
		}
		for i := range n {
			r.datagram(q, h, q.rd.msg(i))
		}
		r.flush(q)
	}
}

// datagram handles the netlink messages of one datagram: packets get their
// verdicts queued in the batch, the bind's acknowledgement goes to Open.
func (r *Runner) datagram(q *queue, h Handler, dg []byte) {
	for len(dg) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(dg))
		if l < nlmsgHdrLen || l > len(dg) {
			return
		}
		switch binary.NativeEndian.Uint16(dg[4:]) {
		case nfqnlMsgPacket:
			if p, ok := parsePacket(dg[nlmsgHdrLen:l]); ok && p.hasID && p.payload != nil {
				r.handle(q, h, p.id, p.payload, p.mark, p.meta)
			}
		case unix.NLMSG_ERROR:
			r.nlError(q, dg[nlmsgHdrLen:l])
		}
		a := (l + 3) &^ 3
		if a >= len(dg) {
			return
		}
		dg = dg[a:]
	}
}

// nlError handles an NLMSG_ERROR: the negative errno (0 for an
// acknowledgement), then the header of the message it answers.
func (r *Runner) nlError(q *queue, m []byte) {
	if len(m) < 4 {
		return
	}
	errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(m)))
	if len(m) >= 4+nlmsgHdrLen && binary.NativeEndian.Uint32(m[4+8:]) == bindSeq && q.bound != nil && !q.acked {
		var err error
		if errno != 0 {
			err = errno
		}
		q.bound <- err // buffered, and sent once
		q.acked = true
		return
	}
	if errno != 0 {
		// the kernel refused a verdict (verdicts ask for no acknowledgement)
		r.verdictErrors.Add(1)
	}
}
