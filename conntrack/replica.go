package conntrack

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// Replication's narrow view of the table (nat/ha): one control connection's
// snapshot record (ConnSnap: its calls, stream positions and Call-ID
// allocation) is the unit a gateway pair copies. The table stamps a
// connection when it changes, so the publisher pulls what changed since
// its last look (ReplicaChanges) and the packet path never waits for it;
// records of other nodes are imported whole (ImportConn) and reserve
// their outer Call IDs like local calls do. A connection belongs to the
// node whose record it is (ConnInfo.Node) until this node sees one of its
// control segments: then it is this node's own (adopt), which is how a
// standby takes a dead node's calls over without a promotion step.

// connReplica is a connection's replication state.
type connReplica struct {
	origin string // the node whose record this is; "" this node
	stamp  uint64 // tableReplica.seq at its last change
	seen   int64  // the newest time in the record when imported
}

// replicaOf is c's replication state (the zero value until replication
// or an import first touched it: most tables never replicate, and a
// connection's bytes count at scale, so it lives in c's rare part).
func (c *Conn) replicaOf() connReplica {
	if c.rare == nil {
		return connReplica{}
	}
	return c.rare.connReplica
}

// rep is c's replication state to change.
func (c *Conn) rep() *connReplica { return &c.takeRare().connReplica }

// tableReplica tracks changes for the publisher; off (the zero value) it
// costs one branch per change.
type tableReplica struct {
	on      bool          // set once by EnableReplica, under the lock
	seq     atomic.Uint64 // bumped under the write lock per change
	changed chan struct{} // signalled after a change (capacity 1)
	goneMu  sync.Mutex    // guards gone (taken under t.mu, never the other way)
	gone    []string      // keys of this node's connections gone since the last look
}

// ReplicaKey names connection inside-outside in replication's keys:
// "INSIDE_ADDR:PORT_OUTSIDE_ADDR:PORT".
func ReplicaKey(inside, outside Endpoint) string { return epString(inside) + "_" + epString(outside) }

func parseReplicaKey(key string) (inside, outside Endpoint, err error) {
	a, b, ok := strings.Cut(key, "_")
	if !ok {
		return Endpoint{}, Endpoint{}, fmt.Errorf("replica key %q: want INSIDE_OUTSIDE", key)
	}
	if inside, err = parseEP(a); err != nil {
		return Endpoint{}, Endpoint{}, err
	}
	if outside, err = parseEP(b); err != nil {
		return Endpoint{}, Endpoint{}, err
	}
	return inside, outside, nil
}

// EnableReplica starts change tracking; every connection already in the
// table counts as changed. The channel is signalled after changes.
func (t *Table) EnableReplica() <-chan struct{} {
	t.lock()
	defer t.unlock()
	if !t.repl.on {
		t.repl.on = true
		t.repl.changed = make(chan struct{}, 1)
		t.repl.seq.Store(1)
		for c := range t.idx.conns.all {
			c.rep().stamp = 1
		}
	}
	return t.repl.changed
}

// touch stamps c as changed (t.mu held for writing).
func (t *Table) touch(c *Conn) {
	if !t.repl.on {
		return
	}
	c.rep().stamp = t.repl.seq.Add(1)
	select {
	case t.repl.changed <- struct{}{}:
	default:
	}
}

// adopt makes c this node's own: its control segments pass here.
func (t *Table) adopt(c *Conn) {
	if t.repl.on {
		c.rep().origin = ""
		t.touch(c)
	}
}

// replicaGone remembers that this node's connection c left the table.
func (t *Table) replicaGone(c *Conn) {
	if !t.repl.on || c.replicaOf().origin != "" {
		return
	}
	t.repl.goneMu.Lock()
	t.repl.gone = append(t.repl.gone, ReplicaKey(c.Inside, c.Outside))
	t.repl.goneMu.Unlock()
	t.touch(c)
}

// ReplicaSeq is the stamp of the table's last change.
func (t *Table) ReplicaSeq() uint64 { return t.repl.seq.Load() }

// ReplicaChanges returns the records of this node's connections changed
// after stamp since (0: all of them), the keys of those gone since the
// last call, and the stamp they are current to.
func (t *Table) ReplicaChanges(since uint64) (changed []ConnSnap, gone []string, seq uint64) {
	t.mu.RLock()
	seq = t.repl.seq.Load()
	for c := range t.idx.conns.all {
		if c.replicaOf().origin == "" && c.replicaOf().stamp > since {
			changed = append(changed, t.idx.snap(c))
		}
	}
	t.repl.goneMu.Lock()
	gone, t.repl.gone = t.repl.gone, nil
	t.repl.goneMu.Unlock()
	t.mu.RUnlock()
	return changed, gone, seq
}

// ReplicaForeign returns the keys of the connections held for other nodes,
// by node.
func (t *Table) ReplicaForeign() map[string][]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := make(map[string][]string)
	for c := range t.idx.conns.all {
		if o := c.replicaOf().origin; o != "" {
			m[o] = append(m[o], ReplicaKey(c.Inside, c.Outside))
		}
	}
	return m
}

// Import outcomes.
const (
	Imported      = iota // the record replaced what the table held
	ImportOlder          // the table's copy is newer (last writer wins by LastSeen)
	ImportPartial        // imported, but calls colliding with ours were skipped
	ImportAdopted        // not imported: this node carries the connection's traffic now, its copy wins
)

// ImportConn puts node's record cs of one connection into the table,
// replacing the table's copy unless that one is newer (a later control
// segment) or this node has carried the connection's traffic since it
// imported it (then the copy here becomes this node's own: adopted);
// node "" imports it as this node's own. Its calls reserve
// their outer Call IDs; one colliding with a call of ours is skipped.
func (t *Table) ImportConn(node string, cs ConnSnap) (int, error) {
	in, err := parseEP(cs.Inside)
	if err != nil {
		return 0, err
	}
	out, err := parseEP(cs.Outside)
	if err != nil {
		return 0, err
	}
	t.lock()
	defer t.unlock()
	if c := t.idx.connAt(in, out); c != nil {
		if res, keep := t.keepCopy(c, node, &cs); keep {
			return res, nil
		}
		if c.replicaOf().origin == "" && node != "" {
			t.replicaGone(c) // ours no more: its record goes
		}
		t.dropConn(c)
	}
	cs.Origin = node
	skipped := t.restoreConn(cs)
	c := t.idx.connAt(in, out)
	if c == nil {
		return 0, fmt.Errorf("record %s not importable", ReplicaKey(in, out))
	}
	c.rep().seen = c.newest()
	t.touch(c)
	// The fast path heard of each call: dropConn and restoreConn's
	// publish log them (changelog.go).
	if skipped > 0 {
		return ImportPartial, nil
	}
	return Imported, nil
}

// keepCopy decides whether the table's copy c of a connection stays
// against node's record cs (t.mu held).
func (t *Table) keepCopy(c *Conn, node string, cs *ConnSnap) (int, bool) {
	switch {
	case node != "" && c.replicaOf().origin == node && c.newest() > c.replicaOf().seen:
		// The addresses moved here: the other node's record (e.g. of its
		// previous life, republished when it came back as standby) is
		// older than what this node carries.
		c.rep().origin = ""
		t.touch(c)
		return ImportAdopted, true
	case node != "" && c.replicaOf().origin == node:
		return 0, false // the owner's update
	case c.lastSeen > cs.LastSeen:
		return ImportOlder, true // a later control segment here
	case node != "" && c.replicaOf().origin == "" && c.newest() > snapNewest(cs):
		return ImportOlder, true // this node carries newer traffic
	}
	return 0, false
}

// snapNewest is the latest time in record cs.
func snapNewest(cs *ConnSnap) int64 {
	n := cs.LastSeen
	for i := range cs.Calls {
		n = max(n, cs.Calls[i].LastSeen)
	}
	return n
}

// DropReplica applies the deletion of node's record key: the connection
// goes, unless this node has carried its traffic since the import (it
// took over from a dead node, whose lease ran out): then it is adopted.
func (t *Table) DropReplica(node, key string) (adopted bool, err error) {
	in, out, err := parseReplicaKey(key)
	if err != nil {
		return false, err
	}
	t.lock()
	defer t.unlock()
	c := t.idx.connAt(in, out)
	if c == nil || c.replicaOf().origin != node || node == "" {
		return false, nil
	}
	if c.newest() > c.replicaOf().seen {
		c.rep().origin = ""
		t.touch(c)
		return true, nil
	}
	t.dropConn(c) // logs its calls for the fast path (changelog.go)
	return false, nil
}

// dropConn removes c and its calls without events: a replica replaced or
// deleted is no call ending here.
func (t *Table) dropConn(c *Conn) {
	for k := range c.eachCallBack {
		if t.idx.unpublish(k) && !k.identity() {
			t.bumpCalls(k, nil)
		}
		t.idx.remove(k)
	}
	for d := range c.resv {
		t.release(c, d)
	}
	t.idx.delConn(c)
}

// newest is the latest time c or one of its calls was seen.
func (c *Conn) newest() int64 {
	n := c.lastSeen
	for k := range c.eachCall {
		n = max(n, k.lastSeen.Load())
	}
	return n
}
