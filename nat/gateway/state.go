package gateway

import (
	"errors"
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
}

func (g *Gateway) snapshot() {
	if g.deps.State == nil {
		return
	}
	err := g.deps.State.Write(g.table.Snapshot())
	g.health.stateWrite(time.Now(), err)
	if err != nil {
		g.log.Error("write state file", zap.Error(err))
	}
}
