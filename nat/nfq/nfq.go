// Package nfq runs pptpgw's NFQUEUE sockets: one go-nfqueue socket and
// receive goroutine per queue of a contiguous range, a Handler per packet
// and a verdict back to the kernel. go-nfqueue binds the queue; the
// packets are then read and the verdicts written on the raw socket with
// no allocation per packet (recv.go, verdict.go). It knows nothing of PPTP.
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
	// WriteTimeout bounds each verdict's send (0: one second). A verdict
	// that cannot be sent leaves the packet queued until the socket closes.
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
