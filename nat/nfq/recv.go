package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The receive side, for the same reason as verdict.go: go-nfqueue's loop
// receives through mdlayher/netlink and mdlayher/socket, which start a
// goroutine and a channel per receive to watch for cancellation, allocate
// the message buffer and a Message per packet, clone the payload and
// allocate a pointer per attribute. Once the library has bound the queue
// and handed the first packet to the hook, the hook keeps the goroutine
// and reads the socket itself: up to recvBatch datagrams (one packet each)
// per recvmmsg(2) into buffers allocated once per queue, the attributes
// parsed in place, the payload handled (and rewritten) where it lies, the
// batch's verdicts written together before the next receive. When the
// context ends, go-nfqueue sets a past read deadline, which ends the wait;
// the hook then returns non-zero and the library's loop unbinds the queue
// as before.

const (
	nfqnlMsgPacket   = 3<<8 | 0 // NFNL_SUBSYS_QUEUE, NFQNL_MSG_PACKET
	nfqaPacketHdr    = 1
	nfqaIfIndexInDev = 5
	nlaTypeMask      = 0x3fff
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

// packetMsg is what the hook needs of one queued packet.
type packetMsg struct {
	id       uint32
	hasID    bool
	hook     uint8
	mark     uint32
	hasInDev bool
	payload  []byte // nil when absent
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
			p.id, p.hasID, p.hook = binary.BigEndian.Uint32(d), true, d[6]
		case nfqaMark:
			if len(d) < 4 {
				return p, false
			}
			p.mark = binary.BigEndian.Uint32(d)
		case nfqaIfIndexInDev:
			p.hasInDev = true
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

// serve is the queue's receive loop once the hook has taken it over. It
// returns when the context ends (0 would keep go-nfqueue's loop going, so
// it returns 1) or the socket fails for good.
func (r *Runner) serve(ctx context.Context, q *queue, h Handler) int {
	for {
		if ctx.Err() != nil {
			return 1
		}
		n, err := q.rd.next()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return 1
			case errors.Is(err, unix.ENOBUFS):
				r.noBuffers.Add(1)
				q.rateLimited(zap.WarnLevel, "receive buffer overrun, kernel dropped packets")
				continue
			}
			// no read deadline but go-nfqueue's past one at cancel: one
			// without a cancelled context (the library closed) stops too
			r.fail(&os.SyscallError{Syscall: "recvmmsg", Err: err})
			return 1
		}
		for i := range n {
			r.datagram(q, h, q.rd.msg(i))
		}
		r.flush(q)
	}
}

// datagram handles the netlink messages of one datagram: packets get their
// verdicts queued in the batch.
func (r *Runner) datagram(q *queue, h Handler, dg []byte) {
	for len(dg) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(dg))
		if l < nlmsgHdrLen || l > len(dg) {
			return
		}
		switch binary.NativeEndian.Uint16(dg[4:]) {
		case nfqnlMsgPacket:
			if p, ok := parsePacket(dg[nlmsgHdrLen:l]); ok && p.hasID && p.payload != nil {
				r.handle(q, h, p.id, p.payload, p.mark, Meta{Hook: p.hook, HasInDev: p.hasInDev})
			}
		case unix.NLMSG_ERROR:
			// the kernel refused a verdict (no acks are asked for)
			if l >= nlmsgHdrLen+4 && int32(binary.NativeEndian.Uint32(dg[nlmsgHdrLen:])) != 0 {
				r.verdictErrors.Add(1)
			}
		}
		a := (l + 3) &^ 3
		if a >= len(dg) {
			return
		}
		dg = dg[a:]
	}
}
