package conntrack_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

// logReader is a fast path tier as the change log serves it: the
// mappings it holds by key, brought up to date with DesiredChanges, or
// with Desired whole when the log cannot tell.
type logReader struct {
	gen           uint64
	held          map[conntrack.GREMap]conntrack.GREMap // by key: Peer, Public, OuterID
	fulls, logged int
}

func mapKey(m conntrack.GREMap) conntrack.GREMap {
	return conntrack.GREMap{Peer: m.Peer, Public: m.Public, OuterID: m.OuterID}
}

func (r *logReader) sync(tbl *conntrack.Table) {
	changes, gen, ok := tbl.DesiredChanges(r.gen, nil)
	if !ok || r.held == nil { // the first read is whole, as a tier's Start
		maps, g := tbl.Desired(nil)
		r.held, r.gen = map[conntrack.GREMap]conntrack.GREMap{}, g
		for _, m := range maps {
			r.held[mapKey(m)] = m
		}
		r.fulls++
		return
	}
	seen := map[conntrack.GREMap]bool{}
	for _, c := range changes {
		k := mapKey(c.Map)
		if seen[k] {
			panic(fmt.Sprintf("key %+v twice in one read", k))
		}
		seen[k] = true
		if c.Live {
			r.held[k] = c.Map
		} else {
			delete(r.held, k)
		}
	}
	r.gen = gen
	r.logged++
}

// check reports the first difference between what r holds and Desired.
func (r *logReader) check(tbl *conntrack.Table) error {
	maps, _ := tbl.Desired(nil)
	if len(maps) != len(r.held) {
		return fmt.Errorf("holds %d mappings, desired %d", len(r.held), len(maps))
	}
	for _, m := range maps {
		if got := r.held[mapKey(m)]; got != m {
			return fmt.Errorf("holds %+v for desired %+v", got, m)
		}
	}
	return nil
}

// churn is a table under random control traffic: calls set up (some
// refused, some failing), torn down, deleted, their Call IDs reused at
// once (also the peer's: a new call displacing an old one's mapping),
// connections reset, negotiations ended (with a policy that waits for
// them), policies changed, everything expired.
type churn struct {
	t     *testing.T
	rng   *rand.Rand
	tbl   *conntrack.Table
	res   *fakeResolver
	flows []*flow
	port  uint16
	calls map[*flow][][2]uint16 // inside Call ID, peer Call ID
}

func newChurn(t *testing.T, seed uint64) *churn {
	c := &churn{t: t, rng: rand.New(rand.NewPCG(seed, 7)), tbl: newTable(conntrack.Limits{MaxCallsPerInside: 3}),
		res: &fakeResolver{}, port: 40000, calls: map[*flow][][2]uint16{}}
	for i := range 12 {
		c.flows = append(c.flows, c.newFlow(i))
	}
	return c
}

func (c *churn) newFlow(i int) *flow {
	c.port++
	pac := pac1
	if i%2 == 1 {
		pac = pac2
	}
	f := pnsFlow(c.t, c.tbl, c.res, clientAddr(i%5), c.port, pac)
	f.start()
	return f
}

// step does one random thing to the table.
func (c *churn) step() {
	i := c.rng.IntN(len(c.flows))
	f := c.flows[i]
	f.advance(time.Millisecond)
	ids := c.calls[f]
	switch n := c.rng.IntN(100); {
	case n < 45 || len(ids) == 0:
		in, peer := uint16(c.rng.IntN(6)), uint16(0x100+c.rng.IntN(6))
		out := f.send(dirOut, ocrq(in))
		result := byte(1)
		if c.rng.IntN(10) == 0 {
			result = 2
		}
		f.send(dirIn, ocrp(peer, u16(out, 12), result))
		c.calls[f] = append(ids, [2]uint16{in, peer})
	case n < 70:
		j := c.rng.IntN(len(ids))
		f.send(dirIn, cdn(ids[j][1]))
		c.calls[f] = append(ids[:j], ids[j+1:]...)
	case n < 80:
		for _, k := range c.tbl.Calls() {
			if k.Peer == f.ends[dirIn].Addr && c.rng.IntN(3) == 0 {
				c.tbl.Delete(k.ID(), f.now) //nolint:errcheck // already gone is fine
			}
		}
	case n < 85:
		f.rst(dirOut)
		delete(c.calls, f)
		c.flows[i] = c.newFlow(i)
	case n < 97:
		c.endNegotiation(f)
	case n < 99:
		var p *conntrack.Policy
		if c.rng.IntN(2) == 0 {
			p = &conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}
		}
		c.tbl.SetPolicy(p, f.now)
	default:
		c.tbl.Expire(f.now + int64(conntrack.DefaultGREIdle))
		for j := range c.flows {
			delete(c.calls, c.flows[j])
			c.flows[j] = c.newFlow(j)
		}
	}
}

// endNegotiation sends one call of f an MS-CHAPv2 negotiation (the
// policy's) up to its first encrypted frame, which ends the watch on it,
// or only that frame (which clears it, under the policy).
func (c *churn) endNegotiation(f *flow) {
	frames := msChapV2Call
	if c.rng.IntN(4) == 0 {
		frames = frames[len(frames)-1:]
	}
	for _, k := range c.tbl.Calls() {
		if k.Peer == f.ends[dirIn].Addr && k.Inside == f.ends[dirOut].Addr && k.State == conntrack.StateEstablished {
			for _, g := range frames {
				if g.dir == dirIn {
					c.tbl.GREInPPP(k.Peer, k.Public, k.OuterID, g.ppp, len(g.ppp)+8, f.now)
				} else {
					c.tbl.GREOutPPP(k.Inside, k.Peer, k.PeerID, g.ppp, len(g.ppp)+8, f.now)
				}
			}
			return
		}
	}
}

// TestDesiredChanges: two readers of the change log, each at its own
// pace, brought up to date with DesiredChanges over random control
// traffic, hold exactly what Desired says; with a short log they fall
// behind it and read Desired whole, and still hold it.
func TestDesiredChanges(t *testing.T) {
	for _, size := range []int{4096, 8} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newChurn(t, uint64(size))
			c.tbl.DesiredChanged() // a reader: the log is kept
			c.tbl.SetChangeLogLen(size)
			fast, slow := &logReader{}, &logReader{}
			fast.sync(c.tbl)
			slow.sync(c.tbl)
			for round := range 3000 {
				c.step()
				if c.rng.IntN(3) == 0 {
					fast.sync(c.tbl)
					if err := fast.check(c.tbl); err != nil {
						t.Fatalf("round %d, fast reader: %v", round, err)
					}
				}
				if c.rng.IntN(40) == 0 {
					slow.sync(c.tbl)
					if err := slow.check(c.tbl); err != nil {
						t.Fatalf("round %d, slow reader: %v", round, err)
					}
				}
			}
			t.Logf("fast reader: %d reads of the log, %d whole; slow: %d, %d", fast.logged, fast.fulls, slow.logged, slow.fulls)
			if fast.logged < 500 || fast.fulls > fast.logged/2 && size > 8 {
				t.Errorf("fast reader: %d reads of the log, %d whole", fast.logged, fast.fulls)
			}
			if size == 8 && slow.fulls < 10 {
				t.Errorf("slow reader of a short log: only %d whole reads", slow.fulls)
			}
		})
	}
}

// TestDesiredChangesReplica: a standby importing the records of a table
// under random control traffic, and dropping those gone, keeps its change
// log: a reader of it holds what the standby's Desired says, reading the
// desired state whole only at start.
func TestDesiredChangesReplica(t *testing.T) {
	c := newChurn(t, 3)
	c.tbl.EnableReplica()
	for i := range c.flows {
		c.flows[i] = c.newFlow(i) // records for the new connections
	}
	standby := newTable(conntrack.Limits{MaxCallsPerInside: 3})
	standby.EnableReplica()
	standby.DesiredChanged()
	reader := &logReader{}
	reader.sync(standby)
	var seq uint64
	imports := 0
	for round := range 2000 {
		c.step()
		if c.rng.IntN(4) != 0 {
			continue
		}
		recs, gone, s := c.tbl.ReplicaChanges(seq)
		seq = s
		for _, r := range recs {
			if _, err := standby.ImportConn("a", r); err != nil {
				t.Fatal(err)
			}
			imports++
		}
		for _, k := range gone {
			if _, err := standby.DropReplica("a", k); err != nil {
				t.Fatal(err)
			}
		}
		reader.sync(standby)
		if err := reader.check(standby); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	t.Logf("%d imports; the reader: %d reads of the log, %d whole", imports, reader.logged, reader.fulls)
	if reader.fulls != 1 || imports < 100 {
		t.Errorf("%d imports; %d whole reads, want 1 (the first)", imports, reader.fulls)
	}
}

// TestDesiredChangesConcurrent: two readers of the change log and the
// packet path ending negotiations (no table lock) run while the control
// path changes the table; once it is quiet, each reader's next read
// brings it to what Desired says (and -race finds no race).
func TestDesiredChangesConcurrent(t *testing.T) {
	c := newChurn(t, 5)
	c.tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, t0.UnixNano())
	c.tbl.DesiredChanged()
	c.tbl.SetChangeLogLen(64)
	readers := []*logReader{{}, {}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.sync(c.tbl)
			}
		}()
	}
	wg.Add(1)
	go func() { // the packet path
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, k := range c.tbl.Calls() {
				for _, g := range msChapV2Call {
					if g.dir == dirIn {
						c.tbl.GREInPPP(k.Peer, k.Public, k.OuterID, g.ppp, len(g.ppp)+8, t0.UnixNano())
					} else {
						c.tbl.GREOutPPP(k.Inside, k.Peer, k.PeerID, g.ppp, len(g.ppp)+8, t0.UnixNano())
					}
				}
			}
		}
	}()
	for range 3000 {
		if c.step(); c.rng.IntN(100) == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	close(stop)
	wg.Wait()
	for i, r := range readers {
		r.sync(c.tbl)
		if err := r.check(c.tbl); err != nil {
			t.Errorf("reader %d: %v", i, err)
		}
		t.Logf("reader %d: %d reads of the log, %d whole", i, r.logged, r.fulls)
	}
}
