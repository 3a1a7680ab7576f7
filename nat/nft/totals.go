package nft

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Totals are what the table `ip pptpgw` holds: the calls mapped and the
// packets and bytes their element counters show (calls since gone are
// not there).
type Totals struct {
	Calls                 int
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
}

// ReadTotals reads the table's element counters beside a running daemon
// (`pptpgw check`); it changes nothing. An error that errors.Is
// os.ErrNotExist means there is no such table. cfg.NetNS, when set, is
// the namespace to read.
func ReadTotals(cfg Config) (Totals, error) {
	var opts []nftables.ConnOption
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return Totals{}, fmt.Errorf("nf_tables: %w", err)
	}
	rs := newRuleset(0)
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); errors.Is(err, unix.ENOENT) {
		return Totals{}, fmt.Errorf("nf_tables: table ip %s: %w", TableName, os.ErrNotExist)
	} else if err != nil {
		return Totals{}, fmt.Errorf("nf_tables: table ip %s: %w", TableName, err)
	}
	var t Totals
	for _, s := range []struct {
		set            *nftables.Set
		packets, bytes *uint64
		calls          *int
	}{{rs.inAddr, &t.PacketsIn, &t.BytesIn, &t.Calls}, {rs.outCalls, &t.PacketsOut, &t.BytesOut, nil}} {
		els, err := c.GetSetElements(s.set)
		if err != nil {
			return Totals{}, fmt.Errorf("nf_tables: read %s: %w", s.set.Name, err)
		}
		for _, el := range els {
			if el.Counter != nil {
				*s.packets += el.Counter.Packets
				*s.bytes += el.Counter.Bytes
			}
			if s.calls != nil {
				*s.calls++
			}
		}
	}
	return t, nil
}
