package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/fastpath"
)

// Config configures a Backend.
type Config struct {
	// MarkBit is set on every packet the kernel translated (--mark-bit),
	// so that pptpgw's iptables GRE chains skip it.
	MarkBit uint32
	// NetNS, when not 0, is a network namespace file descriptor to
	// program instead of the caller's (tests).
	NetNS int
}

// Backend owns the table `ip pptpgw` (fastpath.Backend "kernel"): Replace
// creates it afresh with the calls given, Apply adds and removes map
// elements, Counters reads the element counters. It keeps no mirror: the
// maps are keyed by the packets' own fields, which are the fastpath keys.
type Backend struct {
	rs   *ruleset
	conn *nftables.Conn
	// pending are the elements of the next transaction, per map, deletions
	// apart from additions: one message per map and kind, whatever the
	// calls (each message costs an acknowledgement to read).
	pending [2][4][]nftables.SetElement
}

var _ fastpath.Backend = (*Backend)(nil)

// New connects to nf_tables; an error means this kernel cannot be
// programmed (no nf_tables, no CAP_NET_ADMIN).
func New(cfg Config) (*Backend, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nf_tables: %w", err)
	}
	return &Backend{rs: newRuleset(cfg.MarkBit), conn: conn}, nil
}

// Name implements fastpath.Backend.
func (b *Backend) Name() string { return "kernel" }

// maxBatch bounds the calls of one transaction (at most eight messages,
// a deletion and an addition per map): a batch of thousands makes messages
// too big for the socket (EMSGSIZE).
const maxBatch = 256

// Replace implements fastpath.Backend: the table is replaced by an empty
// one, committed first (until the elements follow, those calls' GRE takes
// the queues), then filled in transactions of at most maxBatch calls.
func (b *Backend) Replace(maps []conntrack.GREMap) error {
	if err := b.rs.create(b.conn); err != nil {
		return fmt.Errorf("nf_tables: create table ip %s: %w", TableName, err)
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nf_tables: create table ip %s: %w", TableName, err)
	}
	return b.Apply(maps, nil)
}

// Apply implements fastpath.Backend.
func (b *Backend) Apply(add, del []conntrack.GREMap) error {
	n := 0
	for i, batch := range [][]conntrack.GREMap{del, add} {
		for _, m := range batch {
			b.plan(m, i == 1)
			if n++; n == maxBatch {
				if err := b.flush(); err != nil {
					return err
				}
				n = 0
			}
		}
	}
	if n == 0 {
		return nil
	}
	return b.flush()
}

func (b *Backend) flush() error {
	var errs []error
	c, sets := b.conn, b.rs.maps()
	for kind := range b.pending {
		for i, elems := range b.pending[kind] {
			if len(elems) == 0 {
				continue
			}
			if kind == 0 {
				errs = append(errs, c.SetDeleteElements(sets[i], elems))
			} else {
				errs = append(errs, c.SetAddElements(sets[i], elems))
			}
			b.pending[kind][i] = elems[:0]
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nf_tables: update table ip %s: %w", TableName, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nf_tables: update table ip %s: %w", TableName, err)
	}
	return nil
}

// plan queues the elements of m's two keys, added or deleted, in the
// order of ruleset.maps: inAddr, inID, outCalls, outAddr.
func (b *Backend) plan(m conntrack.GREMap, add bool) {
	ik := greKeyBytes(m.Peer, m.Public, m.OuterID)
	ok := greKeyBytes(m.Inside, m.Peer, m.PeerID)
	p := &b.pending[0]
	if !add {
		p[0], p[1] = append(p[0], nftables.SetElement{Key: ik}), append(p[1], nftables.SetElement{Key: ik})
		p[2], p[3] = append(p[2], nftables.SetElement{Key: ok}), append(p[3], nftables.SetElement{Key: ok})
		return
	}
	p = &b.pending[1]
	p[0] = append(p[0], nftables.SetElement{Key: ik, Val: m.Inside[:]})
	p[1] = append(p[1], nftables.SetElement{Key: ik, Val: callID(m.InsideID)})
	p[2] = append(p[2], nftables.SetElement{Key: ok})
	p[3] = append(p[3], nftables.SetElement{Key: ok, Val: m.Public[:]})
}

// Counters implements fastpath.Backend: a dump of the two sets that
// count (the kernel keeps no last-use time; Last stays zero).
func (b *Backend) Counters(in func(fastpath.InKey, fastpath.Counters), out func(fastpath.OutKey, fastpath.Counters)) error {
	err := b.dumpCounters(b.rs.inAddr, MapInAddr, func(k parsedKey, c fastpath.Counters) {
		in(fastpath.InKey{Peer: k.src, Public: k.dst, OuterID: k.id}, c)
	})
	if err != nil {
		return err
	}
	return b.dumpCounters(b.rs.outCalls, SetOutCalls, func(k parsedKey, c fastpath.Counters) {
		out(fastpath.OutKey{Inside: k.src, Peer: k.dst, PeerID: k.id}, c)
	})
}

// dumpCounters reads the set named name and calls each with every
// element's key and counter.
func (b *Backend) dumpCounters(set *nftables.Set, name string, each func(parsedKey, fastpath.Counters)) error {
	els, err := b.conn.GetSetElements(set)
	if err != nil {
		return fmt.Errorf("nf_tables: read %s: %w", name, err)
	}
	for _, el := range els {
		if k, ok := parseKey(el); ok {
			each(k, fastpath.Counters{Packets: el.Counter.Packets, Bytes: el.Counter.Bytes})
		}
	}
	return nil
}

type parsedKey struct {
	src, dst conntrack.Addr
	id       uint16
}

func parseKey(el nftables.SetElement) (parsedKey, bool) {
	if len(el.Key) != len(key{}) || el.Counter == nil {
		return parsedKey{}, false
	}
	k := key(el.Key)
	return parsedKey{src: conntrack.Addr(k[0:4]), dst: conntrack.Addr(k[4:8]), id: uint16(k[8])<<8 | uint16(k[9])}, true
}

// Close implements fastpath.Backend: with remove the table goes, else
// the kernel keeps translating the calls it holds until the next start
// re-syncs it.
func (b *Backend) Close(remove bool) error {
	defer b.conn.CloseLasting()
	if !remove {
		return nil
	}
	b.conn.DelTable(b.rs.table)
	return b.conn.Flush()
}

// RemoveTable deletes the table `ip pptpgw` if there is one (`pptpgw
// rules remove`; `run --gre-path queue` after a kernel run) and reports
// whether there was.
func RemoveTable() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nf_tables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("nf_tables: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return false, fmt.Errorf("nf_tables: delete table ip %s: %w", TableName, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// Available reports whether this host's kernel answers nf_tables requests.
func Available() bool {
	c, err := nftables.New()
	if err != nil {
		return false
	}
	_, err = c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	return err == nil
}
