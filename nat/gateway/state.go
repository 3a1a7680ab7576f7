package gateway

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/statefile"
)

// StateStore reads and writes the call table's snapshot.
type StateStore interface {
	Read(s *conntrack.Snapshot) (found bool, err error)
	Write(s conntrack.Snapshot) error
}

// StateFile is the StateStore of a file (atomic writes, a bad file set
// aside as NAME.bad).
type StateFile string

func (p StateFile) Read(s *conntrack.Snapshot) (bool, error) {
	return statefile.Read(string(p), s, conntrack.SnapshotVersion)
}

func (p StateFile) Write(s conntrack.Snapshot) error { return statefile.Write(string(p), s) }

// WriteStream writes a snapshot the writer encodes (conntrack.StateBuf).
func (p StateFile) WriteStream(encode func(io.Writer) error) error {
	return statefile.WriteStream(string(p), encode)
}

// streamStateStore is a StateStore that takes the snapshot as its encoder
// (StateFile): the writer copies the table into a StateBuf it reuses
// (about a quarter of Snapshot's time under the lock) and encodes it
// without encoding/json's reflection (about a fifth of its CPU), 64 KiB at
// a time: the file is never whole in memory.
type streamStateStore interface {
	WriteStream(encode func(io.Writer) error) error
}

// restore reads the state file; a bad one is set aside and the gateway
// starts empty.
func (g *Gateway) restore() {
	if g.deps.State == nil {
		return
	}
	var snap conntrack.Snapshot
	found, err := g.deps.State.Read(&snap)
	var bad *statefile.BadFileError
	switch {
	case errors.As(err, &bad):
		g.log.Warn("state file unusable, starting empty", zap.String("path", bad.Path), zap.String("kept_as", bad.BadPath), zap.String("reason", bad.Reason))
		return
	case err != nil:
		g.log.Warn("state file unreadable, starting empty", zap.Error(err))
		return
	case !found:
		return
	}
	skipped, err := g.table.Restore(snap)
	if err != nil {
		g.log.Warn("state file not restored", zap.Error(err))
		return
	}
	g.log.Info("state restored", zap.Int("conns", len(snap.Conns)), zap.Int("skipped", skipped))
	g.restored = len(snap.Conns) > 0
}

// confirmRestored asks the kernel's conntrack table which restored control
// connections still exist (a restart) and which do not (a reboot): those
// end after --restore-grace unless a segment shows them meanwhile, and a
// new call with the IDs of one of their calls replaces it at once.
func (g *Gateway) confirmRestored(res conntrack.Resolver) {
	if !g.restored {
		return
	}
	confirmed, left := g.table.ConfirmRestored(res)
	g.log.Info("restored connections checked against conntrack", zap.Int("confirmed", confirmed), zap.Int("unconfirmed", left),
		zap.Duration("grace", g.table.Limits().RestoreGrace))
}

// DefaultStateWriteGap is the shortest time between two writes of the
// state file on change: a burst of call set-ups and teardowns costs one
// write, and a crash loses at most that much of them.
const DefaultStateWriteGap = 250 * time.Millisecond

// stateWriter is the state file's writer's record (Stats).
type stateWriter struct {
	writes, errors atomic.Uint64
	snapNanos      atomic.Int64 // the last snapshot's time under the table's read lock
	writeNanos     atomic.Int64 // the last write's time (encode, write, fsync, rename)
	lastWrite      atomic.Int64 // when the last write succeeded (unix ns)
	// bufs holds the writer's *conntrack.StateBuf between writes (some
	// 400 B per call): reused while calls are set up, given back to the
	// heap by the garbage collector when the table is quiet.
	bufs sync.Pool
}

// writeState writes the state file when the table's state generation grew
// (a call set up, settled or torn down, a connection opened or ended), at
// most every StateWriteGap (or ten snapshot or four write times, if
// longer), and every SnapshotInterval for the stream
// positions. The packet path only bumps a counter and fills a channel of
// one: it never waits for the disk.
func (g *Gateway) writeState(ctx context.Context) {
	g.mu.Lock()
	tick := g.snapTick
	g.mu.Unlock()
	defer tick.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	armed := false
	var last time.Time
	write := func() {
		armed = false
		last = time.Now()
		g.snapshot()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			write()
		case <-g.table.StateChanged():
			// A big table's snapshot holds the read lock longer (3 to 7 ms
			// at 10 000 calls) and its write takes longer (15 to 35 ms,
			// most of it the file's write and fsync): keep the
			// control path's share of waiting for the lock under a tenth
			// and the writer's CPU under a quarter of a core.
			gap := max(g.cfg.StateWriteGap, 10*time.Duration(g.state.snapNanos.Load()),
				4*time.Duration(g.state.writeNanos.Load()))
			if wait := gap - time.Since(last); wait > 0 {
				if !armed {
					armed = true
					soon.Reset(wait)
				}
				continue
			}
			write()
		case <-soon.C:
			write()
		}
	}
}

func (g *Gateway) snapshot() {
	if g.deps.State == nil {
		return
	}
	snapTime, writeTime, err := g.writeSnapshot()
	g.state.snapNanos.Store(int64(snapTime))
	g.state.writeNanos.Store(int64(writeTime))
	g.health.stateWrite(time.Now(), err)
	if err != nil {
		g.state.errors.Add(1)
		g.log.Error("write state file", zap.Error(err))
		return
	}
	g.state.writes.Add(1)
	g.state.lastWrite.Store(time.Now().UnixNano())
}

// writeSnapshot writes the table's state and returns the time it held the
// table's read lock and the time the encoding and writing took.
func (g *Gateway) writeSnapshot() (snapTime, writeTime time.Duration, err error) {
	t0 := time.Now()
	ss, ok := g.deps.State.(streamStateStore)
	if !ok {
		snap := g.table.Snapshot()
		t1 := time.Now()
		err = g.deps.State.Write(snap)
		return t1.Sub(t0), time.Since(t1), err
	}
	b, _ := g.state.bufs.Get().(*conntrack.StateBuf)
	if b == nil {
		b = new(conntrack.StateBuf)
	}
	defer g.state.bufs.Put(b)
	g.table.SnapshotTo(b)
	t1 := time.Now()
	err = ss.WriteStream(b.EncodeTo)
	return t1.Sub(t0), time.Since(t1), err
}

// stateStats: state_writes, state_write_errors, and the last write's
// snapshot (under the table's read lock) and write times in microseconds.
func (g *Gateway) stateStats(s map[string]uint64) {
	if g.deps.State == nil {
		return
	}
	s["state_writes"] = g.state.writes.Load()
	s["state_write_errors"] = g.state.errors.Load()
	s["state_snapshot_us"] = uint64(g.state.snapNanos.Load() / 1e3)
	s["state_write_us"] = uint64(g.state.writeNanos.Load() / 1e3)
}
