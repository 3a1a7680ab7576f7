package ctnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Conn is a ctnetlink socket that answers single-entry queries (Get).
//
// It exists because (*conntrack.Conn).Get hangs with mdlayher/netlink
// v1.11.2 whenever the entry exists: the kernel flags its one-message
// answer NLM_F_MULTI but ends it with an ACK, not NLMSG_DONE, and that
// netlink version keeps reading for the DONE that never comes
// (mdlayher/netlink#315, open). Conn sends the request through
// mdlayher/netlink but reads the reply itself: one message, or an error.
// Encoding and decoding of the flow stay ti-mo's.
type Conn struct {
	mu  sync.Mutex // one query in flight: replies are matched by sequence
	nl  *netlink.Conn
	rc  syscall.RawConn
	buf []byte
}

// queryTimeout bounds one Get. The kernel answers in microseconds; the
// bound only keeps a lost reply from stalling a queue goroutine for good.
const queryTimeout = time.Second

// Dial opens a ctnetlink socket in the network namespace whose file
// descriptor is netns (0: the caller's). A Conn is safe for concurrent use;
// queries are serialised.
func Dial(netns int) (*Conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	rc, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("ctnetlink raw conn: %w", err)
	}
	return &Conn{nl: nl, rc: rc, buf: make([]byte, 1<<16)}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.nl.Close() }

// Get returns the conntrack entry one of whose directions equals the
// query's original tuple (or, if that is unset, its reply tuple): the
// kernel matches either direction. A missing entry is an error wrapping
// unix.ENOENT. Only IPv4 tuples with ports (TCP, UDP, ...) are supported.
func (c *Conn) Get(q conntrack.Flow) (conntrack.Flow, error) {
	attrType, t := uint16(ctaTupleOrig), q.TupleOrig
	if !t.IP.SourceAddress.IsValid() {
		attrType, t = ctaTupleReply, q.TupleReply
	}
	if !t.IP.SourceAddress.Is4() || !t.IP.DestinationAddress.Is4() {
		return conntrack.Flow{}, fmt.Errorf("ctnetlink get: IPv4 tuple needed, got %s", t)
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ipctnlMsgCtGet,
		Family:      netfilter.ProtoIPv4,
		// No NLM_F_ACK: the answer is then exactly one message, the entry
		// or an error, whatever the reply flags say.
		Flags: netlink.Request,
	}, []netfilter.Attribute{tupleAttr(attrType, t)})
	if err != nil {
		return conntrack.Flow{}, fmt.Errorf("ctnetlink get: encode: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	sent, err := c.nl.Send(req)
	if err != nil {
		return conntrack.Flow{}, fmt.Errorf("ctnetlink get: send: %w", err)
	}
	if err := c.nl.SetReadDeadline(time.Now().Add(queryTimeout)); err != nil {
		return conntrack.Flow{}, fmt.Errorf("ctnetlink get: %w", err)
	}
	for {
		b, err := c.recv()
		if err != nil {
			return conntrack.Flow{}, fmt.Errorf("ctnetlink get: receive: %w", err)
		}
		for len(b) >= nlmsgHeaderLen {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHeaderLen || l > len(b) {
				return conntrack.Flow{}, errors.New("ctnetlink get: malformed reply")
			}
			m := netlink.Message{
				Header: netlink.Header{
					Length:   uint32(l),
					Type:     netlink.HeaderType(binary.NativeEndian.Uint16(b[4:])),
					Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:])),
					Sequence: binary.NativeEndian.Uint32(b[8:]),
					PID:      binary.NativeEndian.Uint32(b[12:]),
				},
				Data: b[nlmsgHeaderLen:l],
			}
			b = b[min(len(b), (l+3)&^3):]
			if m.Header.Sequence != sent.Header.Sequence {
				continue // the late answer to a query that timed out
			}
			return decodeReply(m)
		}
	}
}

// recv reads one datagram into c.buf, waiting in the runtime's poller.
func (c *Conn) recv() ([]byte, error) {
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), c.buf, 0)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return c.buf[:n], nil
}

// decodeReply turns the answer to a query into a flow or an error.
func decodeReply(m netlink.Message) (conntrack.Flow, error) {
	switch m.Header.Type {
	case netlink.Error:
		if len(m.Data) < 4 {
			return conntrack.Flow{}, errors.New("ctnetlink get: short error message")
		}
		if code := int32(binary.NativeEndian.Uint32(m.Data)); code < 0 {
			return conntrack.Flow{}, fmt.Errorf("ctnetlink get: %w", syscall.Errno(-code))
		}
		return conntrack.Flow{}, errors.New("ctnetlink get: acknowledged without an entry")
	case netlink.Done:
		return conntrack.Flow{}, fmt.Errorf("ctnetlink get: %w", unix.ENOENT)
	}
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil {
		return conntrack.Flow{}, fmt.Errorf("ctnetlink get: decode: %w", err)
	}
	if ev.Flow == nil {
		return conntrack.Flow{}, errors.New("ctnetlink get: reply without a flow")
	}
	return *ev.Flow, nil
}

// ctnetlink numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	nlmsgHeaderLen  = 16
	ipctnlMsgCtGet  = 1 // IPCTNL_MSG_CT_GET
	ctaTupleOrig    = 1 // CTA_TUPLE_ORIG
	ctaTupleReply   = 2 // CTA_TUPLE_REPLY
	ctaTupleIP      = 1 // CTA_TUPLE_IP
	ctaTupleProto   = 2 // CTA_TUPLE_PROTO
	ctaIPv4Src      = 1 // CTA_IP_V4_SRC
	ctaIPv4Dst      = 2 // CTA_IP_V4_DST
	ctaProtoNum     = 1 // CTA_PROTO_NUM
	ctaProtoSrcPort = 2 // CTA_PROTO_SRC_PORT
	ctaProtoDstPort = 3 // CTA_PROTO_DST_PORT
)

// tupleAttr encodes a tuple as ti-mo does (tuple.go), for IPv4 with ports.
func tupleAttr(typ uint16, t conntrack.Tuple) netfilter.Attribute {
	addr := func(a netip.Addr) []byte { b := a.As4(); return b[:] }
	return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
		{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaIPv4Src, Data: addr(t.IP.SourceAddress)},
			{Type: ctaIPv4Dst, Data: addr(t.IP.DestinationAddress)},
		}},
		{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaProtoNum, Data: []byte{t.Proto.Protocol}},
			{Type: ctaProtoSrcPort, Data: netfilter.Uint16Bytes(t.Proto.SourcePort)},
			{Type: ctaProtoDstPort, Data: netfilter.Uint16Bytes(t.Proto.DestinationPort)},
		}},
	}}
}
