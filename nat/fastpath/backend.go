// Package fastpath keeps a kernel GRE fast path (nf_tables maps, tc-eBPF
// maps) converged to the calls the call table says the kernel may
// translate. The table publishes that desired state (a generation and the
// set of eligible mappings, and what changed since a generation); a
// Reconciler applies what changed, or diffs the whole set against what the
// backend holds, retries on error with a full Replace, and
// reads per-call counters back into the table through one narrow method.
// Nothing here runs under the table's lock, and backends never see the
// table.
package fastpath

import (
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// InKey is an inbound mapping's key, the packet's own fields: GRE from
// Peer to Public carrying OuterID.
type InKey struct {
	Peer, Public conntrack.Addr
	OuterID      uint16
}

// OutKey is an outbound mapping's key: GRE from Inside to Peer carrying
// PeerID.
type OutKey struct {
	Inside, Peer conntrack.Addr
	PeerID       uint16
}

// InKeyOf and OutKeyOf are m's two keys.
func InKeyOf(m conntrack.GREMap) InKey {
	return InKey{Peer: m.Peer, Public: m.Public, OuterID: m.OuterID}
}
func OutKeyOf(m conntrack.GREMap) OutKey {
	return OutKey{Inside: m.Inside, Peer: m.Peer, PeerID: m.PeerID}
}

// Counters are one direction of one mapping, cumulative since the mapping
// entered the kernel (from a DeltaCounters backend: since its previous
// report). Last is when the kernel last translated a packet of it (zero:
// never, or the backend cannot tell).
type Counters struct {
	Packets, Bytes uint64
	Last           time.Time
}

// Backend is one way of having the kernel translate GRE. The Reconciler
// calls it from one goroutine; no method may be called concurrently.
type Backend interface {
	// Name is the --gre-path value it implements ("bpf", "kernel").
	Name() string
	// Replace makes the kernel hold exactly maps, whatever it held
	// before (at start, over what an earlier run left, and after a
	// failed Apply).
	Replace(maps []conntrack.GREMap) error
	// Apply adds and removes mappings. del holds mappings an earlier
	// Replace or Apply added. An error leaves the kernel in an unknown
	// state: the Reconciler follows it with Replace.
	Apply(add, del []conntrack.GREMap) error
	// Counters reads the cumulative counters of every mapping the kernel
	// holds, calling in and out once per key (a DeltaCounters backend:
	// what moved since, and may leave out keys that moved nothing).
	Counters(in func(InKey, Counters), out func(OutKey, Counters)) error
	// Close lets go of the kernel objects; with remove they are deleted,
	// else they stay and keep translating (persistent rules: the next
	// start re-syncs them with Replace).
	Close(remove bool) error
}

// FinalCounter is a Backend that reads a mapping's last counters as Apply
// deletes it (bpf), so that the packets of a call's last moments are
// counted too. fn runs on the Reconciler's goroutine, inside Apply.
type FinalCounter interface {
	OnDelete(fn func(m conntrack.GREMap, in bool, c Counters))
}

// DeltaCounters is a Backend that can tell, with CountersAreDeltas true,
// that its Counters and OnDelete (FinalCounter) report what each key moved
// since the backend's previous report of it, or since the key entered the
// kernel, rather than cumulative counts: the bpf call lines, whose
// counters it takes with atomic swaps to zero. The Reconciler credits
// those as they come and keeps no last read for that tier (18 bytes a
// call in the Mirror otherwise). The backend must never report the same
// packet twice: a key it reports after a Replace or a failed Apply
// reports only what moved since its last report, and what it reports for
// a key the Reconciler does not hold for it is lost. Counters may
// skip keys that moved nothing.
type DeltaCounters interface {
	CountersAreDeltas() bool
}

// Source is the call table as a fast path sees it (*conntrack.Table). A
// Source may also tell its generation alone (Generation() uint64) and what
// changed since a generation (DesiredChanges, conntrack/changelog.go): the
// Reconciler then converges in the time of the changes.
type Source interface {
	// Desired appends to dst the mappings of every call the kernel may
	// translate now and returns them with the generation they belong
	// to. The generation grows with every change of that set.
	Desired(dst []conntrack.GREMap) ([]conntrack.GREMap, uint64)
	// DesiredChanged returns a channel of the caller's own, signalled
	// (capacity 1, never closed) after the generation grew.
	DesiredChanged() <-chan struct{}
	// FastPathCounters adds packets and bytes the kernel translated for
	// the call of m (in: towards the inside end); last, when not zero,
	// is when it last did. A call no longer in the table is ignored.
	FastPathCounters(m conntrack.GREMap, in bool, packets, bytes uint64, last time.Time)
}
