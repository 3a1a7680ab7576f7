package conntrack

// Outer Call ID allocation (DESIGN.md "The control stream"): which outer ID
// a Call ID the inside end announces gets, chosen byte by byte because the
// two bytes may travel in different segments. The call itself is created
// by lifecycle.go once the ID is chosen.

const bucketSize = 256

// chooseBucket picks the outer high byte for an inside ID whose high byte
// is hi: the bucket this connection already uses for hi, else hi itself,
// else the next bucket with room. A bucket this connection uses for
// another inside high byte is skipped, so that an outer high byte always
// names one inside high byte and a Peer Call ID split on its way back can
// be restored byte by byte.
func (t *Table) chooseBucket(c *Conn, hi byte) (byte, bool) {
	peer := c.Outside.Addr
	for k := range c.eachCall {
		if k.inIndex() && byte(k.InsideID>>8) == hi {
			if y := byte(k.OuterID >> 8); t.idx.room(peer, y) {
				return y, true
			}
			break
		}
	}
	for i := 0; i < 256; i++ {
		b := hi + byte(i)
		if t.idx.room(peer, b) && !c.bucketTaken(b, hi) {
			return b, true
		}
	}
	return 0, false
}

// bucketTaken reports whether c uses outer high byte b for an inside high
// byte other than hi.
func (c *Conn) bucketTaken(b, hi byte) bool {
	for k := range c.eachCall {
		if k.inIndex() && byte(k.OuterID>>8) == b && byte(k.InsideID>>8) != hi {
			return true
		}
	}
	return false
}

// chooseLow picks the outer ID in bucket hi: the inside low byte when free,
// else counting up from it, wrapping within the bucket.
func (t *Table) chooseLow(peer Addr, hi, lo byte) (uint16, bool) {
	for i := 0; i < 256; i++ {
		id := uint16(hi)<<8 | uint16(lo+byte(i))
		if t.idx.outer(peer, id) == nil {
			return id, true
		}
	}
	return 0, false
}

// reserve holds a slot of bucket b for direction d of c until the low
// byte of the Call ID arrives.
func (t *Table) reserve(c *Conn, d int, b byte) {
	t.idx.reserve(c.Outside.Addr, b)
	c.resv[d] = int16(b)
}

// release gives back direction d's reserved bucket slot.
func (t *Table) release(c *Conn, d int) {
	if c.resv[d] < 0 {
		return
	}
	t.idx.unreserve(c.Outside.Addr, byte(c.resv[d]))
	c.resv[d] = -1
}
