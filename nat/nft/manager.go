package nft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/conntrack"
)

// Source is the call table as the fast path sees it (*conntrack.Table).
type Source interface {
	SetFastPath(f conntrack.FastPath)
	PromoteFastPath()
	KernelGRE(m conntrack.GREMap, in bool, packets, bytes uint64, now int64)
}

// Config configures a Manager.
type Config struct {
	// MarkBit is set on every packet the kernel translated (--mark-bit),
	// so that pptpgw's iptables GRE chains skip it.
	MarkBit uint32
	// Poll is how often calls whose PPP negotiation is over are promoted
	// and the element counters are read into the calls' counters and
	// last-seen times (less often above pollCalls calls); default 1 s.
	Poll time.Duration
	Log  *zap.Logger
	// NetNS, when not 0, is a network namespace file descriptor to
	// program instead of the caller's (tests).
	NetNS int
}

// Stats are the fast path's counters since start.
type Stats struct {
	PacketsIn, PacketsOut uint64 // GRE the kernel translated, read from the element counters
	BytesIn, BytesOut     uint64
	Elements              uint64 // calls in the maps now
	Syncs                 uint64 // netlink batches applied
	Errors                uint64 // batches the kernel refused (each followed by a full resync)
}

type inEntry struct {
	m             conntrack.GREMap
	packets, byts uint64 // counters last read
}

type outEntry = inEntry

type op struct {
	add bool
	m   conntrack.GREMap
}

// Manager owns the table `ip pptpgw`: it creates it afresh at Start, adds
// and removes map elements as the call table's FastPath, and reads the
// element counters back into the calls. One goroutine talks to the kernel;
// MapAdd and MapDel only queue.
type Manager struct {
	cfg  Config
	log  *zap.Logger
	rs   *ruleset
	conn *nftables.Conn
	src  Source

	mu   sync.Mutex
	ops  []op
	wake chan struct{}

	// worker only
	in       map[key]*inEntry
	out      map[key]*outEntry
	create   bool
	failing  bool
	idleTick int // ticks since the counters were last read
	cancel   context.CancelFunc
	done     chan struct{}
	pktsIn   atomic.Uint64
	pktsOut  atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	elements atomic.Uint64
	syncs    atomic.Uint64
	errs     atomic.Uint64
}

// New returns a Manager; Start programs the kernel.
func New(cfg Config) *Manager {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Manager{cfg: cfg, log: cfg.Log, rs: newRuleset(cfg.MarkBit), wake: make(chan struct{}, 1)}
}

// MapAdd implements conntrack.FastPath.
func (m *Manager) MapAdd(g conntrack.GREMap) { m.queue(op{true, g}) }

// MapDel implements conntrack.FastPath.
func (m *Manager) MapDel(g conntrack.GREMap) { m.queue(op{false, g}) }

func (m *Manager) queue(o op) {
	m.mu.Lock()
	m.ops = append(m.ops, o)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Start replaces any table `ip pptpgw` by a fresh one holding the calls
// src has now (after the state file was restored), attaches itself to src
// and keeps the kernel in step until ctx ends or Stop. An error means
// nf_tables could not be programmed at all.
func (m *Manager) Start(ctx context.Context, src Source) error {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if m.cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(m.cfg.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("nf_tables: %w", err)
	}
	m.conn, m.src = conn, src
	m.create = true
	src.SetFastPath(m)
	if err := m.apply(); err != nil {
		src.SetFastPath(nil)
		conn.CloseLasting()
		return fmt.Errorf("nf_tables: create table ip %s: %w", TableName, err)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	go m.run(ctx)
	return nil
}

// Stop detaches from the call table and stops the worker; with remove, the
// table goes too (else the kernel keeps translating the calls it knows
// until the next Start re-syncs it).
func (m *Manager) Stop(remove bool) error {
	if m.cancel == nil {
		return nil
	}
	m.src.SetFastPath(nil)
	m.cancel()
	<-m.done
	m.cancel = nil
	defer m.conn.CloseLasting()
	if !remove {
		return nil
	}
	m.conn.DelTable(m.rs.table)
	return m.conn.Flush()
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	return Stats{PacketsIn: m.pktsIn.Load(), PacketsOut: m.pktsOut.Load(), BytesIn: m.bytesIn.Load(),
		BytesOut: m.bytesOut.Load(), Elements: m.elements.Load(), Syncs: m.syncs.Load(), Errors: m.errs.Load()}
}

// run is the worker: queued changes as they come, counters and promotions
// every Poll.
func (m *Manager) run(ctx context.Context) {
	defer close(m.done)
	tick := time.NewTicker(m.cfg.Poll)
	defer tick.Stop()
	m.log.Info("kernel GRE fast path running", zap.String("table", "ip "+TableName))
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
			m.sync()
		case <-tick.C:
			m.src.PromoteFastPath()
			if m.failing {
				m.resync()
			}
			// Counted in ticks: comparing clock readings would skip every
			// other tick, a tick landing a hair early.
			if m.idleTick++; m.idleTick >= m.pollTicks() {
				m.idleTick = 0
				if err := m.poll(time.Now().UnixNano()); err != nil {
					m.log.Warn("read the fast path's counters", zap.Error(err))
				}
			}
		}
	}
}

func (m *Manager) sync() {
	if err := m.apply(); err != nil {
		m.errs.Add(1)
		m.log.Error("fast path update refused by the kernel, re-syncing", zap.Error(err))
		m.resync()
	}
}

// resync rebuilds the table from the call table (after an error: the
// kernel and the mirror may differ).
func (m *Manager) resync() {
	m.mu.Lock()
	m.ops = nil
	m.mu.Unlock()
	m.create = true
	m.src.SetFastPath(m) // replays every eligible call into m.ops
	if err := m.apply(); err != nil {
		if !m.failing {
			m.log.Error("fast path re-sync failed; GRE goes through the queues until it works", zap.Error(err))
		}
		m.failing = true
		return
	}
	if m.failing {
		m.log.Info("fast path re-synced")
	}
	m.failing = false
}

// maxBatch bounds the element operations of one transaction (each is one
// to four netlink messages): a batch of thousands overflows the socket
// buffers, ENOBUFS on the acks and EMSGSIZE on the send.
const maxBatch = 128

// apply sends the queued changes, in transactions of at most maxBatch
// operations. A table created afresh is committed empty first: until its
// elements follow, the GRE of those calls takes the queues.
func (m *Manager) apply() error {
	m.mu.Lock()
	ops := m.ops
	m.ops = nil
	m.mu.Unlock()
	c := m.conn
	flush := func() error {
		m.elements.Store(uint64(len(m.in)))
		if err := c.Flush(); err != nil {
			m.create = true // the kernel and the mirror may differ: start over
			return err
		}
		m.syncs.Add(1)
		return nil
	}
	if m.create {
		if err := m.rs.create(c); err != nil {
			return err
		}
		m.in = map[key]*inEntry{}
		m.out = map[key]*outEntry{}
		if err := flush(); err != nil {
			return err
		}
		m.create = false
	}
	n := 0
	for _, o := range ops {
		k, err := m.plan(c, o)
		if err != nil {
			m.create = true
			return err
		}
		if n += k; n >= maxBatch {
			if err := flush(); err != nil {
				return err
			}
			n = 0
		}
	}
	if n == 0 {
		return nil
	}
	return flush()
}

// plan queues on c what o changes in the kernel, against the mirror, and
// returns the number of messages.
func (m *Manager) plan(c *nftables.Conn, o op) (int, error) {
	g := o.m
	ik := greKey(g.Peer, g.Public, g.OuterID)
	ok := greKey(g.Inside, g.Peer, g.PeerID)
	n := 0
	sameIn := func(e *inEntry) bool { return e.m.Inside == g.Inside && e.m.InsideID == g.InsideID }
	sameOut := func(e *outEntry) bool { return e.m.Public == g.Public }
	delIn := func() error {
		n++
		e := []nftables.SetElement{{Key: ik[:]}}
		delete(m.in, ik)
		return errors.Join(c.SetDeleteElements(m.rs.inAddr, e), c.SetDeleteElements(m.rs.inID, e))
	}
	delOut := func() error {
		n++
		delete(m.out, ok)
		e := []nftables.SetElement{{Key: ok[:]}}
		return errors.Join(c.SetDeleteElements(m.rs.outCalls, e), c.SetDeleteElements(m.rs.outAdr, e))
	}
	if !o.add {
		if e := m.in[ik]; e != nil && sameIn(e) {
			if err := delIn(); err != nil {
				return n, err
			}
		}
		if e := m.out[ok]; e != nil && sameOut(e) {
			if err := delOut(); err != nil {
				return n, err
			}
		}
		return n, nil
	}
	if e := m.in[ik]; e == nil || !sameIn(e) {
		if e != nil {
			if err := delIn(); err != nil {
				return n, err
			}
		}
		n++
		m.in[ik] = &inEntry{m: g}
		err := errors.Join(
			c.SetAddElements(m.rs.inAddr, []nftables.SetElement{{Key: ik[:], Val: g.Inside[:]}}),
			c.SetAddElements(m.rs.inID, []nftables.SetElement{{Key: ik[:], Val: callID(g.InsideID)}}))
		if err != nil {
			return n, err
		}
	}
	if e := m.out[ok]; e == nil || !sameOut(e) {
		if e != nil {
			if err := delOut(); err != nil {
				return n, err
			}
		}
		n++
		m.out[ok] = &outEntry{m: g}
		err := errors.Join(
			c.SetAddElements(m.rs.outCalls, []nftables.SetElement{{Key: ok[:]}}),
			c.SetAddElements(m.rs.outAdr, []nftables.SetElement{{Key: ok[:], Val: g.Public[:]}}))
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// pollCalls is how many calls' counters are read every Poll; above it,
// every calls/pollCalls Polls. Dumping a set costs the kernel more than
// linear time (it walks the set again for each part of the dump): about
// 110 ms for 10 000 calls here, a tenth of a CPU if done every second,
// while the idle timeouts count in minutes.
const pollCalls = 1000

func (m *Manager) pollTicks() int { return max(1, len(m.in)/pollCalls) }

// poll reads the element counters and gives the calls what the kernel
// translated since the last read.
func (m *Manager) poll(now int64) error {
	if m.failing || len(m.in)+len(m.out) == 0 {
		return nil
	}
	ins, err := m.conn.GetSetElements(m.rs.inAddr)
	if err != nil {
		return err
	}
	for _, el := range ins {
		if len(el.Key) != len(key{}) || el.Counter == nil {
			continue
		}
		if e := m.in[key(el.Key)]; e != nil {
			m.credit(e, el.Counter.Packets, el.Counter.Bytes, true, now)
		}
	}
	outs, err := m.conn.GetSetElements(m.rs.outCalls)
	if err != nil {
		return err
	}
	for _, el := range outs {
		if len(el.Key) != len(key{}) || el.Counter == nil {
			continue
		}
		if e := m.out[key(el.Key)]; e != nil {
			m.credit(e, el.Counter.Packets, el.Counter.Bytes, false, now)
		}
	}
	return nil
}

func (m *Manager) credit(e *inEntry, pkts, byts uint64, in bool, now int64) {
	if pkts < e.packets || byts < e.byts { // the element was re-created
		e.packets, e.byts = 0, 0
	}
	dp, db := pkts-e.packets, byts-e.byts
	e.packets, e.byts = pkts, byts
	if dp == 0 {
		return
	}
	m.src.KernelGRE(e.m, in, dp, db, now)
	if in {
		m.pktsIn.Add(dp)
		m.bytesIn.Add(db)
	} else {
		m.pktsOut.Add(dp)
		m.bytesOut.Add(db)
	}
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
