// Package nfq runs pptpgw's NFQUEUE queues: one netlink socket and one
// receive goroutine per queue of a contiguous range, a Handler per packet
// and a verdict back to the kernel. It knows nothing of PPTP.
//
// # How
//
// Each queue gets a NETLINK_NETFILTER socket of its own, opened with
// mdlayher/netlink (in Config.NetNS when set), which also sets its options:
// NoENOBUFS and the buffer sizes. One NFQNL_MSG_CONFIG message binds the
// queue to that socket's netlink port and sets the copy mode and range, the
// backlog and the flags (bind.go). From then on the queue's goroutine is
// the only reader of the socket (recv.go): up to recvBatch datagrams per
// recvmmsg(2) into buffers allocated once per queue, the attributes parsed
// in place, the handler run on each packet where it lies, and the batch's
// verdicts, encoded by hand, written in one write(2) (verdict.go). Both are
// raw non-blocking system calls on the socket's syscall.RawConn (the
// documented escape hatch of mdlayher/netlink); only the wait for the next
// datagram goes through Go's poller. Nothing is allocated per packet or
// per batch. The bind's acknowledgement arrives on that same loop, behind
// any packets queued before it, and is handed to Open. Close, or the end
// of Open's context, closes the sockets: the poller wakes the loops, and
// the kernel unbinds a queue when its socket goes (NETLINK_URELEASE),
// dropping what was still queued, or accepting it with --queue-bypass.
//
// # Why not go-nfqueue
//
// github.com/florianl/go-nfqueue/v2 (v2.1.0 and its master) cannot bind a
// queue without running its own receive loop on it: the bind exists only
// inside RegisterWithErrorFunc, which in the same call starts a goroutine
// receiving on the socket that sent the bind. The kernel delivers a
// queue's packets only to the netlink port that bound it (a bind from
// another port gets EPERM), so no other socket can receive them; that
// goroutine unbinds the queue when it ends, and it ends only when its
// callback or error function says so or its context is cancelled, which
// it implements by setting a past read deadline on the socket. Using it for the bind
// therefore means either a second reader racing the library's on one
// socket, or taking over the library's goroutine from inside its callback
// and relying on how it cancels, as this package once did. Its receive
// path also takes two system calls per packet (a peek for the size, then
// the read) and allocates per packet (the buffer, a Message, two copies of
// the payload, a pointer per attribute), and its verdicts six to ten times
// each. What it would send to bind is one
// message of five attributes, built here with mdlayher/netlink, the
// library go-nfqueue itself is built on.
package nfq

import (
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Verdict is what the kernel does with a queued packet.
type Verdict uint8

// Verdicts a Handler can give.
const (
	// Accept lets the packet continue (with the handler's changes, if any)
	// at the next hook; the rest of the queuing rule's table is skipped.
	Accept Verdict = iota
	// Drop discards the packet.
	Drop
)

// String returns "accept" or "drop".
func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Handler decides the fate of one packet from queue q. pkt is the whole
// IPv4 packet, a copy the handler may modify in place (same length: the
// runner sends it back as is) and must not keep after returning; mark is
// the packet's skb mark. The handler returns the verdict, the mark the
// packet should carry (the whole value: return mark|bit to add a bit) and
// whether it changed pkt. The runner only sends the payload back when
// modified is true and the mark only when it differs from mark.
//
// Each queue calls its handler from its own goroutine, so packets of one
// queue arrive in order, and different queues call it concurrently.
type Handler func(q uint16, pkt []byte, mark uint32, meta Meta) (v Verdict, newMark uint32, modified bool)

// Meta is what the kernel tells about where a packet was queued.
type Meta struct {
	// Hook is the netfilter hook (HookPrerouting ... HookPostrouting).
	Hook uint8
	// HasInDev is false for packets the router itself sends.
	HasInDev bool
	// InDev and OutDev are the indexes of the interfaces the packet came
	// in on and goes out through (NFQA_IFINDEX_INDEV, _OUTDEV), 0 when the
	// hook has none: no InDev at OUTPUT, no OutDev at PREROUTING and
	// INPUT. The eBPF fast path learns PPTP's interfaces from them.
	InDev, OutDev uint32
}

// Netfilter hooks (include/uapi/linux/netfilter.h).
const (
	HookPrerouting  = 0
	HookInput       = 1
	HookForward     = 2
	HookOutput      = 3
	HookPostrouting = 4
)

// Defaults applied by Open for zero Config fields.
const (
	DefaultMaxQueueLen = 4096
	DefaultBufferSize  = 4 << 20
	// MaxPacketLen is the copy range asked for: whole packets, since a
	// truncated one sent back with a verdict would be cut. The kernel caps
	// it at 65531 (NFQNL_MAX_COPY_RANGE); with GSO off, queued packets are
	// MTU-sized anyway.
	MaxPacketLen = 65535
)

// Config says which queues to bind and how.
type Config struct {
	// Queue is the first queue number; Queues how many (0 means 1).
	Queue  uint16
	Queues uint16
	// MaxQueueLen is the kernel's per-queue backlog (0: DefaultMaxQueueLen).
	MaxQueueLen uint32
	// FailOpen sets the kernel's fail-open flag: when a queue is full the
	// kernel accepts instead of dropping. For the control queues when
	// --fail-open is set (with --queue-bypass in the rules); never for GRE.
	FailOpen bool
	// BufferSize is the netlink socket's receive and send buffer
	// (0: DefaultBufferSize). Raised with SO_RCVBUFFORCE as root, so a
	// burst queues in the socket rather than being dropped.
	BufferSize int
	// WriteTimeout bounds the wait for room in the socket when a batch of
	// verdicts would block (0: one second). A verdict that cannot be sent
	// leaves the packet queued until the socket closes.
	WriteTimeout time.Duration
	// NetNS, when non-zero, is a file descriptor of the network namespace
	// to bind the queues in (tests, or a daemon serving another namespace).
	NetNS int
	// Logger receives start/stop and error logs (nil: none).
	Logger *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.Queues == 0 {
		c.Queues = 1
	}
	if c.MaxQueueLen == 0 {
		c.MaxQueueLen = DefaultMaxQueueLen
	}
	if c.BufferSize == 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Source is a running packet source: the Runner, or in tests the
// in-memory queues of package nfqtest. Its handler is given when it is
// opened.
type Source interface {
	// Done is closed once the source has stopped.
	Done() <-chan struct{}
	// Wait blocks until the source has stopped and returns what stopped
	// it, nil for a requested stop.
	Wait() error
	// Close stops the source, waits for it and returns Wait's error.
	Close() error
	// Stats returns the counters since the source was opened.
	Stats() Stats
}

var _ Source = (*Runner)(nil)

// Stats are a runner's counters since Open, summed over its queues.
type Stats struct {
	Packets       uint64 // packets handed to the handler
	Dropped       uint64 // Drop verdicts
	Modified      uint64 // Accept verdicts carrying a changed packet
	Marked        uint64 // Accept verdicts carrying a new mark
	VerdictErrors uint64 // verdicts the kernel did not take
	Panics        uint64 // handler panics (the packet was dropped)
	NoBuffers     uint64 // ENOBUFS on receive: the kernel dropped packets
}
