// Package conntrack is pptpgw's userspace state: control connections, calls
// and their GRE mappings, outer Call ID allocation, limits, idle timeouts,
// and snapshot/restore. It does no I/O. All methods are safe for concurrent
// use.
//
// How the pieces fit:
//   - Table (table.go) holds one lock and the GRE lookups. The GRE path
//     takes only the read lock for one probe of a hash table of pointers
//     (ptrtab.go), then works on the call's atomic counters: no
//     allocation, no waiting for the control path's work.
//   - index (index.go) owns every lookup structure (connections, calls by
//     outer ID, by outbound GRE, by the ICMP-quoted tuple, identity calls,
//     the ID buckets) and the counts the limits read, changed only through
//     insert, remove, publish, unpublish and setState; a connection's
//     calls are a list through Call.connNext.
//   - control.go walks a control segment through the direction's stream
//     tracker (alg); alloc.go chooses outer Call IDs byte by byte;
//     lifecycle.go creates calls and moves them from pending to
//     established, closing, refused and gone.
//   - Events (events.go) are collected while the lock is held and handed
//     to the Observer after it is released; EventBuffer puts a bounded
//     buffer and a delivery goroutine in between, so a stuck log sink
//     costs dropped events (events_dropped), never a stalled packet.
//   - fastpath.go publishes the calls the kernel may translate (Desired,
//     a generation and DesiredChanged, the nat/fastpath Source contract;
//     changelog.go what changed since a generation, DesiredChanges)
//     and takes the kernel's counters back (FastPathCounters).
//   - policy.go reads the PPP negotiation of new calls for --require-auth
//     and --require-mppe; snapshot.go saves and restores the table;
//     calls.go lists calls as plain data (CallInfo: the admin socket
//     shapes its JSON from it) and applies the timeouts.
//
// Time is int64 Unix nanoseconds throughout the API ("now int64"): the GRE
// path stores it in an atomic per packet and compares it with one
// subtraction, which a time.Time (three words, a location pointer) cannot
// do; callers read the clock once per packet batch. The one exception is
// FastPathCounters, whose signature is nat/fastpath's contract.
package conntrack

import (
	"net/netip"
	"time"
)

// Addr is a packed IPv4 address: a pointer-free map key.
type Addr [4]byte

// AddrFrom converts a netip.Addr (IPv4 or IPv4-mapped) to Addr.
func AddrFrom(a netip.Addr) Addr { return Addr(a.Unmap().As4()) }

// IP returns a as a netip.Addr.
func (a Addr) IP() netip.Addr { return netip.AddrFrom4(a) }

func (a Addr) String() string { return a.IP().String() }

// Endpoint is an IPv4 address and TCP port.
type Endpoint struct {
	Addr Addr
	Port uint16
}

// Role says which end of a control connection is behind the gateway.
type Role uint8

const (
	RoleUnknown   Role = iota
	RolePNSInside      // a client behind the gateway
	RolePACInside      // a server behind a port-forward
	// The router's own endpoints (ConnSpec.Local): the router itself is
	// the "inside" end, its own address the public one.
	RoleLocalPNS // the router dials out (pptp-linux on the gateway)
	RoleLocalPAC // the router answers (pptpd on the gateway)
)

func (r Role) String() string {
	switch r {
	case RolePNSInside:
		return "pns-inside"
	case RolePACInside:
		return "pac-inside"
	case RoleLocalPNS:
		return "local-pns"
	case RoleLocalPAC:
		return "local-pac"
	}
	return "unknown"
}

// CallState is where a call is in its life.
type CallState uint8

const (
	StatePending     CallState = iota // request seen, no reply yet
	StateEstablished                  // reply with result 1 seen
	StateClosing                      // CCRQ, StopCCRQ or one FIN seen
	StateRefused                      // tombstone: refused or cleared, ID kept reserved, no GRE
)

func (s CallState) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateEstablished:
		return "established"
	case StateClosing:
		return "closing"
	case StateRefused:
		return "refused"
	}
	return "unknown"
}

// Limits and timeouts; a zero value means the default.
type Limits struct {
	MaxCalls          int           // calls in total (pending, up and tombstones)
	MaxCallsPerInside int           // calls per inside address
	GREIdle           time.Duration // an established call with no GRE and no control message
	ControlIdle       time.Duration // a control connection with no segment
	SetupTimeout      time.Duration // a pending call or a tombstone
	CloseLinger       time.Duration // an ended control connection's rewrite records
	// RestoreGrace: a connection restored from the state file that
	// neither the kernel's conntrack table knows nor shows a segment
	// within it is gone (a reboot, the peer gone meanwhile).
	RestoreGrace time.Duration
}

// Defaults for Limits. The timeouts are chosen against PPTP's own clocks
// (RFC 2637): a live control connection carries an Echo-Request at least
// every 60 s; GRE may be silent while a user is idle (pppd sends no LCP
// echo by default).
const (
	// DefaultMaxCalls bounds the table (about 1 KiB a call with its stream
	// records): far above what one edge router carries, low enough that a
	// flood of call requests cannot exhaust memory.
	DefaultMaxCalls = 4096
	// DefaultMaxCallsPerInside keeps one inside host from taking the whole
	// table; a client normally holds one call.
	DefaultMaxCallsPerInside = 64
	// DefaultGREIdle outlives the kernel's own GRE stream timeout (180 s).
	DefaultGREIdle = 5 * time.Minute
	// DefaultControlIdle is 30 missed echo intervals: only a peer that is gone is idle that long.
	DefaultControlIdle = 30 * time.Minute
	// DefaultSetupTimeout is what pptpd and Windows RRAS wait for a call reply.
	DefaultSetupTimeout = 60 * time.Second
	// DefaultCloseLinger keeps a closed connection's rewrite records for retransmissions.
	DefaultCloseLinger = 10 * time.Second
	// DefaultRestoreGrace outlasts one echo interval (60 s): a live
	// connection shows a segment within it.
	DefaultRestoreGrace = 90 * time.Second
)

func (l Limits) withDefaults() Limits {
	orDefault(&l.MaxCalls, DefaultMaxCalls)
	orDefault(&l.MaxCallsPerInside, DefaultMaxCallsPerInside)
	orDefault(&l.GREIdle, DefaultGREIdle)
	orDefault(&l.ControlIdle, DefaultControlIdle)
	orDefault(&l.SetupTimeout, DefaultSetupTimeout)
	orDefault(&l.CloseLinger, DefaultCloseLinger)
	orDefault(&l.RestoreGrace, DefaultRestoreGrace)
	return l
}

// orDefault sets a limit left zero (or negative) to its default.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// ConnInfo names a control connection in logs.
type ConnInfo struct {
	Inside, Outside Endpoint
	Public          Endpoint
	Role            Role
	Identity        bool // the kernel does not NAT it (ConnSpec.Identity)
	Local           bool // one of the router's own (ConnSpec.Local)
	// Serial numbers the table's connections from 1 (0: not one of
	// them), telling apart connections that reuse the same ports.
	Serial uint64
	// Node: the gateway whose record of the connection this is, imported
	// by replication (nat/ha); "" this one.
	Node string
}
