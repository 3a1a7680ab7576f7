package conntrack

// What the state file must keep, and the connections it brought back.
//
// Every change the state file must keep within a second (a call set up,
// settled, closing or torn down; a connection opened or ended) counts in
// index.changes under the write lock; unlock turns a count that grew into
// a new state generation and a signal (StateChanged), which the gateway's
// writer coalesces into one write at most every few hundred milliseconds.
// Stream positions change with every control message and are written with
// the periodic snapshot only: a restored direction whose position is older
// than its stream resumes at the next segment (walkSegment).
//
// Connections restored from the state file are unconfirmed until the
// kernel's conntrack table still has them (ConfirmRestored, at start) or a
// segment of theirs passes. After a reboot neither happens: a new call with
// the same inside address, peer and peer Call ID replaces a call of theirs
// (publish), and they end after Limits.RestoreGrace (Expire).

import "github.com/pptpgw/pptpgw/alg"

// markState turns changes made under the write lock into a new state
// generation; unlock calls it.
func (t *Table) markState() {
	if t.idx.changes == t.stateSeen {
		return
	}
	t.stateSeen = t.idx.changes
	t.stateGen.Add(1)
	select {
	case t.stateChanged <- struct{}{}:
	default:
	}
}

// StateGeneration grows with every change the state file must keep soon.
func (t *Table) StateGeneration() uint64 { return t.stateGen.Load() }

// StateChanged is signalled (capacity 1, never closed) after the state
// generation grew.
func (t *Table) StateChanged() <-chan struct{} { return t.stateChanged }

// replaceable: a SYN on c's ports starts a new connection.
func (c *Conn) replaceable() bool { return c.ended() != 0 || c.unconfirmed }

// walkSegment runs seg through direction dir of c. A restored direction
// whose position is older than the stream (the daemon was killed after
// segments it had walked but before writing them) would see a gap for
// ever, as the bytes in between never come again: its first segment
// beyond the position resumes the walk there instead.
func (t *Table) walkSegment(c *Conn, out bool, dir *alg.Stream, seg *Segment, h *handler) alg.SegResult {
	d := 1
	if out {
		d = 0
	}
	sr := dir.Segment(seg.Seq, seg.SYN, seg.FIN, seg.Payload, h)
	if !c.stale[d] || (len(seg.Payload) == 0 && !seg.FIN) {
		return sr
	}
	c.stale[d] = false
	c.settleRestored()
	if sr.Gap {
		dir.Resume(seg.Seq)
		sr = dir.Segment(seg.Seq, seg.SYN, seg.FIN, seg.Payload, h)
	}
	return sr
}

// settleRestored forgets when c was restored once nothing reads it any
// more (foreign and Expire do only while c is unconfirmed or a direction
// stale), and gives its rare part up if that held nothing else: a restart
// leaves the connections it restored no bigger than new ones.
func (c *Conn) settleRestored() {
	r := c.rare
	if r == nil || c.unconfirmed || c.stale != [2]bool{} {
		return
	}
	r.restoredAt = 0
	if *r == (connRare{}) {
		c.rare = nil
	}
}

// ConfirmRestored asks r (the kernel's conntrack table) about every
// unconfirmed connection, without the lock, and confirms those it knows.
// It returns how many it confirmed and how many are left unconfirmed.
// It asks by the endpoints the connection's segments carry, as Control
// does: a hairpin connection's Inside and Outside are no kernel tuple.
func (t *Table) ConfirmRestored(r Resolver) (confirmed, left int) {
	var todo []connKey
	t.mu.RLock()
	for c := range t.idx.conns.all {
		if c.unconfirmed {
			todo = append(todo, t.idx.connKeyOf(c))
		}
	}
	t.mu.RUnlock()
	alive := make([]bool, len(todo))
	for i, k := range todo {
		_, ok := r.Resolve(k.a, k.b)
		if !ok {
			_, ok = r.Resolve(k.b, k.a)
		}
		alive[i] = ok
	}
	t.lock()
	defer t.unlock()
	for i, k := range todo {
		c := t.idx.conns.get(k)
		switch {
		case c == nil || !c.unconfirmed:
		case alive[i]:
			c.unconfirmed = false
			c.settleRestored()
			confirmed++
		default:
			left++
		}
	}
	return confirmed, left
}
