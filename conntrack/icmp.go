package conntrack

// GREQuoted finds the call an ICMP error is about. The error quotes a GRE
// packet the gateway sent: one the inside end sent to peer carrying the
// peer's Call ID peerID, whose source the gateway had rewritten to public.
// GREQuoted returns the inside end's address, to which the error is
// translated back. Only calls whose outbound GRE is translated are found
// (established or closing, not identity): a pending call or a tombstone
// never had GRE leave, and an identity call's errors reach the inside end
// without help.
//
// One map lookup under the read lock, no allocation: an ICMP flood costs
// no more than GRE.
func (t *Table) GREQuoted(public, peer Addr, peerID uint16) (inside Addr, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c := t.idx.quoted(public, peer, peerID)
	if c == nil || (c.State() != StateEstablished && c.State() != StateClosing) {
		return Addr{}, false
	}
	return c.Inside, true
}
