package nfq

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The queue's socket and the message that binds it
// (include/uapi/linux/netfilter/nfnetlink_queue.h).
const (
	nfqnlMsgConfig     = 3<<8 | 2 // NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG
	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxLen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5
	nfqnlCfgCmdBind    = 1
	nfqnlCopyPacket    = 2
	nfqaCfgFFailOpen   = 1 << 0
	nfqaCfgFConntrack  = 1 << 1
	nfqaCfgFGSO        = 1 << 2
	// nfqaCfgFManaged are the flags the bind sets or clears: fail-open
	// per Config; no GSO, because the ALG needs segmented packets with
	// full checksums; no conntrack attributes, which ctnl reads apart.
	nfqaCfgFManaged = nfqaCfgFFailOpen | nfqaCfgFConntrack | nfqaCfgFGSO

	// bindSeq tells the bind's acknowledgement from the errors of refused
	// verdicts, which are sent with sequence 0.
	bindSeq = 1
)

// dial opens the netlink socket for one queue and sets its options.
func dial(cfg Config) (*netlink.Conn, syscall.RawConn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink socket: %w", err)
	}
	// Without NoENOBUFS a full receive buffer fails the next receive; with
	// it the kernel drops quietly and counts in /proc (ReadProcStats).
	if err := c.SetOption(netlink.NoENOBUFS, true); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("set NoENOBUFS: %w", err)
	}
	// Raised with SO_RCVBUFFORCE as root, so a burst queues in the socket
	// rather than being dropped.
	if err := c.SetReadBuffer(cfg.BufferSize); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("set read buffer: %w", err)
	}
	if err := c.SetWriteBuffer(cfg.BufferSize); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("set write buffer: %w", err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("raw socket: %w", err)
	}
	return c, raw, nil
}

// bindMessage is the one NFQNL_MSG_CONFIG that binds queue num to the
// socket sending it and configures the queue. The kernel
// (nfqnl_recv_config) runs the command, then sets the copy parameters,
// the backlog and the flags, and acknowledges the whole: EPERM if another
// socket holds the queue. The PF_BIND commands libraries still send have
// been no-ops since Linux 3.8.
func bindMessage(num uint16, cfg Config) netlink.Message {
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	var flags uint32
	if cfg.FailOpen {
		flags |= nfqaCfgFFailOpen
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		// struct nfqnl_msg_config_cmd: command, pad, pf (big-endian)
		{Type: nfqaCfgCmd, Data: []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET}},
		// struct nfqnl_msg_config_params (packed): copy_range, copy_mode
		{Type: nfqaCfgParams, Data: append(be32(MaxPacketLen), nfqnlCopyPacket)},
		{Type: nfqaCfgQueueMaxLen, Data: be32(cfg.MaxQueueLen)},
		{Type: nfqaCfgMask, Data: be32(nfqaCfgFManaged)},
		{Type: nfqaCfgFlags, Data: be32(flags)},
	})
	if err != nil {
		panic(err) // fixed, well-formed attributes
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:     nfqnlMsgConfig,
			Flags:    netlink.Request | netlink.Acknowledge,
			Sequence: bindSeq,
		},
		// nfgenmsg: family, version, res_id (the queue, big-endian)
		Data: append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(num >> 8), byte(num)}, attrs...),
	}
}
