package conntrack

import (
	"net/netip"
	"sync/atomic"

	"github.com/pptpgw/pptpgw/alg"
)

// Policy is what the gateway requires of the tunnels through it
// (--require-auth, --require-mppe, --allow-inside, --allow-peer). The zero
// value allows everything. A Policy is not changed once given to the table:
// SetPolicy swaps in a new one.
type Policy struct {
	// Auth lists the authentication protocols a call may negotiate; empty:
	// any, including none.
	Auth []alg.Auth
	// MinMPPE is the shortest MPPE key a call may negotiate (40, 56 or
	// 128); 0: MPPE not required.
	MinMPPE int
	// AllowInside lists the inside addresses that may use PPTP, and
	// AllowPeer the outside ones (the servers an inside client may call,
	// the clients that may reach a PAC inside); empty: any.
	AllowInside, AllowPeer []netip.Prefix
}

// Reasons a call is cleared by policy (Observer.CallRefused) and a control
// connection is denied (PolicyObserver.ControlDenied): constant strings, so
// that logs can be rate-limited per reason.
const (
	ReasonPolicyAuth   = "policy-auth"    // an authentication protocol not allowed, or none
	ReasonPolicyMPPE   = "policy-mppe"    // MPPE weaker than required, or not negotiated
	ReasonPolicyNoMPPE = "policy-no-mppe" // encryption or data started without MPPE negotiated
	ReasonDenyInside   = "deny-inside"    // the inside address is not in --allow-inside
	ReasonDenyPeer     = "deny-peer"      // the outside address is not in --allow-peer
)

// PolicyObserver is an Observer that also hears about denied control
// connections. It is called without the table's lock, on the packet path:
// an EventBuffer forwards it through its buffer.
type PolicyObserver interface {
	ControlDenied(conn ConnInfo, reason string)
}

func (p *Policy) authAllowed(a alg.Auth) bool {
	if len(p.Auth) == 0 || a == alg.AuthUnknown {
		return true
	}
	for _, x := range p.Auth {
		if x == a {
			return true
		}
	}
	return false
}

func allowed(list []netip.Prefix, a Addr) bool {
	if len(list) == 0 {
		return true
	}
	ip := a.IP()
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// connDenied says why a new control connection is not allowed, or "".
func (p *Policy) connDenied(spec ConnSpec) string {
	if !allowed(p.AllowInside, spec.Inside.Addr) {
		return ReasonDenyInside
	}
	if !allowed(p.AllowPeer, spec.Outside.Addr) {
		return ReasonDenyPeer
	}
	return ""
}

// pppFlags record what a call's PPP negotiation has shown so far.
const (
	pppAuthOver  uint32 = 1 << iota // a network-phase frame was seen: authentication is over
	pppMPPESeen                     // a CCP Configure-Ack was seen (its option 18, if any, in mppe)
	pppEncrypted                    // an encrypted (0x00FD) frame was seen
	pppClearData                    // a network-layer datagram in clear was seen
	pppWatch                        // still negotiating: GRE payloads are peeked
)

// pppState's word: the flags in its low byte, the alg.Auth in the next
// four bits, the MPPE option of the last CCP Configure-Ack in the next
// nine (packMPPE), the frames peeked in the top eleven.
const (
	pppAuthShift = 8
	pppAuthMask  = 0xf << pppAuthShift
	pppMPPEShift = 12
	pppMPPEMask  = 0x1ff << pppMPPEShift
	pppPeekShift = 21
)

// Every alg.Auth fits the word's four bits of it.
const _ = 15 - alg.AuthOther

// maxPeek bounds the GRE packets of one call peeked at, so a peer that
// never gets to encryption or data costs nothing for long. A negotiation
// takes a few dozen frames (EAP-TLS the most). It fits the word's 11 bits
// of peeks (the top ones: a count past them wraps, touching nothing else):
// a call stops being peeked at when it is reached.
const maxPeek = 512

// pppState is a call's view of its PPP negotiation, in one word (a call's
// bytes are the table's size): the flags, the authentication, the MPPE
// option and the peek count, changed with atomic Or, And, Add and
// CompareAndSwap, since the GRE path reads and writes them without the
// table's lock. watching is the only thing the GRE path of a call in its
// steady state reads.
type pppState struct {
	word atomic.Uint32
}

// packMPPE keeps the bits of CCP option 18 that RFC 3078 defines (C, D,
// L, S, M in its low byte; H) in nine bits; unpackMPPE undoes it. The
// others are reserved and nothing reads them.
func packMPPE(m alg.MPPE) uint32 {
	return uint32(m&0xff) | uint32(m&alg.MPPEStateless)>>16
}

func unpackMPPE(v uint32) alg.MPPE {
	return alg.MPPE(v&0xff) | alg.MPPE(v&0x100)<<16
}

func (p *pppState) flags() uint32     { return p.word.Load() & 0xff }
func (p *pppState) watching() bool    { return p.word.Load()&pppWatch != 0 }
func (p *pppState) setFlags(f uint32) { p.word.Or(f) }

// setWatch starts or stops peeking; stopWatch reports whether it stopped it.
func (p *pppState) setWatch(on bool) {
	if on {
		p.word.Or(pppWatch)
	} else {
		p.word.And(^pppWatch)
	}
}

func (p *pppState) stopWatch() bool { return p.word.And(^pppWatch)&pppWatch != 0 }

func (p *pppState) auth() alg.Auth { return alg.Auth(p.word.Load() & pppAuthMask >> pppAuthShift) }

// setAuth records a, or only if the call has none yet (ifUnknown).
func (p *pppState) setAuth(a alg.Auth, ifUnknown bool) {
	for {
		w := p.word.Load()
		if ifUnknown && alg.Auth(w&pppAuthMask>>pppAuthShift) != alg.AuthUnknown {
			return
		}
		if p.word.CompareAndSwap(w, w&^pppAuthMask|uint32(a)<<pppAuthShift) {
			return
		}
	}
}

// mppe is the MPPE option recorded and whether one was (pppMPPESeen).
func (p *pppState) mppe() (alg.MPPE, bool) {
	w := p.word.Load()
	return unpackMPPE(w & pppMPPEMask >> pppMPPEShift), w&pppMPPESeen != 0
}

// setMPPE records MPPE option m and sets flags f with it at once.
func (p *pppState) setMPPE(m alg.MPPE, f uint32) {
	for {
		w := p.word.Load()
		if p.word.CompareAndSwap(w, w&^pppMPPEMask|packMPPE(m)<<pppMPPEShift|f) {
			return
		}
	}
}

// peeked counts one more frame peeked at and returns the count.
func (p *pppState) peeked() uint32 { return p.word.Add(1<<pppPeekShift) >> pppPeekShift }

// Auth is the authentication protocol the call negotiated, as far as the
// gateway has seen.
func (k *Call) Auth() alg.Auth { return k.ppp.auth() }

// MPPE is the MPPE option the call negotiated and whether one was seen.
func (k *Call) MPPE() (alg.MPPE, bool) {
	return k.ppp.mppe()
}

// mppeString is what CallInfo shows: "" until CCP is acked, then the option
// ("none" when CCP went without MPPE); "none" too once data flowed without.
func (k *Call) mppeString() string {
	m, seen := k.MPPE()
	switch {
	case seen:
		return m.String()
	case k.ppp.flags()&(pppEncrypted|pppClearData) != 0:
		return "none"
	}
	return ""
}

// restorePPP sets the negotiation state from a state file.
func (k *Call) restorePPP(auth, mppe string, watch bool) {
	for a := alg.AuthNone; a <= alg.AuthOther; a++ {
		if a.String() == auth {
			k.ppp.setAuth(a, false)
		}
	}
	if mppe != "" {
		var m alg.MPPE
		for _, b := range []alg.MPPE{alg.MPPE40, alg.MPPE56, alg.MPPE128} {
			if x := b | alg.MPPEStateless; x.String() == mppe {
				m = x
			} else if b.String() == mppe {
				m = b
			}
		}
		k.ppp.setMPPE(m, pppMPPESeen|pppAuthOver)
	}
	k.ppp.setWatch(watch)
}

// SetPolicy puts a policy in force (start, SIGHUP; nil: allow everything).
// Calls up already are checked against it with what they negotiated: a
// call that no longer complies is cleared. Control connections already
// tracked stay.
func (t *Table) SetPolicy(p *Policy, now int64) {
	if p == nil {
		p = &Policy{}
	}
	t.policy.Store(p)
	t.lock()
	defer t.unlock()
	t.bump() // whether calls wait for their negotiation may have changed
	for c := range t.idx.conns.all {
		for k := range c.eachCallBack {
			if k.State() != StateEstablished && k.State() != StateClosing {
				continue
			}
			if reason := p.callVerdict(k); reason != "" {
				t.clearLocked(k, reason, now)
			}
		}
	}
}

// Policy returns the policy in force.
func (t *Table) Policy() *Policy {
	if p := t.policy.Load(); p != nil {
		return p
	}
	return &Policy{}
}

// callVerdict says why call k does not comply with p as far as its
// negotiation has been seen, or "".
func (p *Policy) callVerdict(k *Call) string {
	f := k.ppp.flags()
	a := k.Auth()
	if len(p.Auth) > 0 && (a == alg.AuthNone || !p.authAllowed(a)) {
		return ReasonPolicyAuth
	}
	if p.MinMPPE == 0 {
		return ""
	}
	m, _ := k.ppp.mppe()
	switch {
	case f&pppMPPESeen != 0 && m.KeyBits() < p.MinMPPE:
		return ReasonPolicyMPPE // a weaker key, MPPC only or another compressor
	case f&pppClearData != 0:
		return ReasonPolicyNoMPPE // data in clear, whatever CCP said
	case f&pppMPPESeen == 0 && f&pppEncrypted != 0:
		return ReasonPolicyNoMPPE // encryption started without a CCP Ack seen
	}
	return ""
}

// authOver records that call k is past its authentication phase: a call
// that negotiated none now shows "none".
func (k *Call) authOver() {
	k.ppp.setFlags(pppAuthOver)
	k.ppp.setAuth(alg.AuthNone, true)
}

// peek reads one GRE payload of call k, which is still negotiating, and
// reports whether that cleared the call. It allocates nothing unless it
// clears the call.
func (t *Table) peek(k *Call, payload []byte, now int64) (cleared bool) {
	if k.ppp.peeked() >= maxPeek {
		t.endWatch(k)
	}
	ev := alg.PeekPPP(payload)
	switch ev.Kind {
	case alg.PPPOther:
		return false
	case alg.PPPAuthAcked:
		k.ppp.setAuth(ev.Auth, false)
	case alg.PPPCCPAcked:
		k.authOver()
		k.ppp.setMPPE(ev.MPPE, pppMPPESeen)
	case alg.PPPNetControl:
		k.authOver()
	case alg.PPPEncrypted:
		k.authOver()
		k.ppp.setFlags(pppEncrypted)
		t.endWatch(k)
	case alg.PPPData:
		k.authOver()
		k.ppp.setFlags(pppClearData)
		t.endWatch(k)
	}
	p := t.policy.Load()
	if p == nil || k.conn.Local { // the router's own calls: its pppd's own options rule
		return false
	}
	if reason := p.callVerdict(k); reason != "" {
		t.lock()
		cleared = t.clearLocked(k, reason, now)
		t.unlock()
	}
	return cleared
}

// endWatch stops peeking at k's negotiation. Where the policy made the
// call wait for it, the fast path may take it now: the generation grows,
// without the lock (this is the packet path).
func (t *Table) endWatch(k *Call) {
	if k.ppp.stopWatch() && t.needsPeek() {
		t.bumpCalls(k, nil)
	}
}

// clearLocked makes an established call a tombstone for a policy reason,
// like an admin DELETE: its GRE is dropped from now on, its outer ID stays
// reserved, nothing is sent to the peers. It reports whether k was up.
func (t *Table) clearLocked(k *Call, reason string, now int64) bool {
	k.ppp.setWatch(false)
	if k.State() != StateEstablished && k.State() != StateClosing {
		return k.State() == StateRefused
	}
	t.refuse(k, reason, now)
	t.policyCleared.Add(1)
	return true
}

// GREInPPP is GREIn for the packet path: while the call is still
// negotiating its PPP link it also reads the GRE payload ppp for the
// policy, and a call cleared by this packet gets GRERefused.
func (t *Table) GREInPPP(peer, dst Addr, outer uint16, ppp []byte, n int, now int64) (Addr, uint16, GREVerdict) {
	inside, id, v, k := t.greIn(peer, dst, outer, n, now)
	if v == GREForward && k.ppp.watching() && t.peek(k, ppp, now) {
		return Addr{}, 0, GRERefused
	}
	return inside, id, v
}

// GREOutPPP is GREOut for the packet path, peeking like GREInPPP.
func (t *Table) GREOutPPP(src, peer Addr, peerID uint16, ppp []byte, n int, now int64) (Addr, GREVerdict) {
	public, v, k := t.greOut(src, peer, peerID, n, now)
	if (v == GREForward || v == GREIdentity) && k != nil && k.ppp.watching() && t.peek(k, ppp, now) {
		return Addr{}, GRERefused
	}
	return public, v
}

// controlDenied reports whether a new control connection is not allowed by
// the policy, counting and reporting it if so.
func (t *Table) controlDenied(spec ConnSpec) bool {
	p := t.policy.Load()
	if p == nil {
		return false
	}
	reason := p.connDenied(spec)
	if reason == "" {
		return false
	}
	t.controlDeniedN.Add(1)
	if o, ok := t.obs.(PolicyObserver); ok { // no lock held here
		o.ControlDenied(ConnInfo{Inside: spec.Inside, Outside: spec.Outside, Public: spec.Public}, reason)
	}
	return true
}

// addPolicyStats adds the policy counters to a Stats map.
func (t *Table) addPolicyStats(m map[string]uint64) {
	m["calls_cleared_policy"] = t.policyCleared.Load()
	m["control_denied"] = t.controlDeniedN.Load()
}
