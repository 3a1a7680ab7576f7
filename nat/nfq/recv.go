package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The receive side, for the same reason as verdict.go: go-nfqueue's loop
// receives through mdlayher/netlink and mdlayher/socket, which start a
// goroutine and a channel per receive to watch for cancellation, allocate
// the message buffer and a Message per packet, clone the payload and
// allocate a pointer per attribute. Once the library has bound the queue
// and handed the first packet to the hook, the hook keeps the goroutine
// and reads the socket itself: one read(2) into a buffer per queue, the
// attributes parsed in place, the payload handled (and rewritten) where it
// lies, the verdict written before the next read. When the context ends,
// go-nfqueue sets a past read deadline, which ends the read; the hook then
// returns non-zero and the library's loop unbinds the queue as before.

const (
	nfqnlMsgPacket   = 3<<8 | 0 // NFNL_SUBSYS_QUEUE, NFQNL_MSG_PACKET
	nfqaPacketHdr    = 1
	nfqaIfIndexInDev = 5
	nlaTypeMask      = 0x3fff
	recvBufLen       = 1 << 17 // a whole packet of MaxPacketLen and its attributes
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

// reader reads one queue's socket on its receive goroutine.
type reader struct {
	buf  []byte
	n    int
	err  error
	raw  syscall.RawConn
	read func(fd uintptr) bool
}

func newReader(raw syscall.RawConn) *reader {
	rd := &reader{buf: make([]byte, recvBufLen), raw: raw}
	rd.read = rd.readFD
	return rd
}

func (rd *reader) readFD(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), rd.buf)
		switch err {
		case nil:
			rd.n, rd.err = n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		default:
			rd.n, rd.err = 0, err
		}
		return true
	}
}

// next blocks for the next datagram and returns it.
func (rd *reader) next() ([]byte, error) {
	if err := rd.raw.Read(rd.read); err != nil {
		return nil, err
	}
	if rd.err != nil {
		return nil, rd.err
	}
	return rd.buf[:rd.n], nil
}

// serve is the queue's receive loop once the hook has taken it over. It
// returns when the context ends (0 would keep go-nfqueue's loop going, so
// it returns 1) or the socket fails for good.
func (r *Runner) serve(ctx context.Context, q *queue, h Handler) int {
	for {
		if ctx.Err() != nil {
			return 1
		}
		dg, err := q.rd.next()
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
			r.fail(&os.SyscallError{Syscall: "read", Err: err})
			return 1
		}
		for len(dg) >= nlmsgHdrLen {
			l := int(binary.NativeEndian.Uint32(dg))
			if l < nlmsgHdrLen || l > len(dg) {
				break
			}
			switch binary.NativeEndian.Uint16(dg[4:]) {
			case nfqnlMsgPacket:
				if p, ok := parsePacket(dg[nlmsgHdrLen:l]); ok && p.hasID && p.payload != nil {
					r.packet(q, h, p.id, p.payload, p.mark, Meta{Hook: p.hook, HasInDev: p.hasInDev})
				}
			case unix.NLMSG_ERROR:
				// the kernel refused a verdict (no acks are asked for)
				if l >= nlmsgHdrLen+4 && int32(binary.NativeEndian.Uint32(dg[nlmsgHdrLen:])) != 0 {
					r.verdictErrors.Add(1)
				}
			}
			a := (l + 3) &^ 3
			if a >= len(dg) {
				break
			}
			dg = dg[a:]
		}
	}
}
