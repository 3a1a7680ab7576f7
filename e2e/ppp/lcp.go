package ppp

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"
)

// PPP protocol numbers used here.
const (
	ProtoLCP = 0xC021
	ProtoPAP = 0xC023
)

// LCP codes (RFC 1661 section 5).
const (
	codeConfReq   = 1
	codeConfAck   = 2
	codeConfNak   = 3
	codeConfRej   = 4
	codeTermReq   = 5
	codeTermAck   = 6
	codeCodeRej   = 7
	codeProtoRej  = 8
	codeEchoReq   = 9
	codeEchoRep   = 10
	codeDiscardRq = 11
)

// LCP configuration options.
const (
	optMRU   = 1
	optACCM  = 2
	optAuth  = 3
	optMagic = 5
	optPFC   = 7
	optACFC  = 8
)

// Options configures an Engine.
type Options struct {
	// EchoInterval is how often an Echo-Request is sent once LCP is opened;
	// 0 sends none.
	EchoInterval time.Duration
	// RestartInterval is the Configure-Request retransmission period.
	RestartInterval time.Duration
	// AuthPAP asks the peer for PAP (LCP option 3 = 0xC023). Nothing more of
	// PAP is spoken: this only puts the option on the wire for policy tests.
	AuthPAP bool
	// Magic is our Magic-Number; 0 picks a random one.
	Magic uint32
	// Logf, when set, receives one line per negotiation event.
	Logf func(format string, args ...any)
}

// Counters is what a test reads to decide whether PPP crossed a link. It is
// the JSON of the status files (see Status).
type Counters struct {
	LCPOpened   bool   `json:"lcp_opened"`
	EchoReqSent uint64 `json:"echo_req_sent"`
	EchoReqRecv uint64 `json:"echo_req_recv"`
	EchoRepRecv uint64 `json:"echo_rep_recv"`
	EchoRepSent uint64 `json:"echo_rep_sent"`
	FramesIn    uint64 `json:"frames_in"`
	FramesOut   uint64 `json:"frames_out"`
	BadFCS      uint64 `json:"bad_fcs"`
	// Magic and PeerMagic pair the two ends of one call: a client's Magic is
	// the server-side peer's PeerMagic.
	Magic     uint32 `json:"magic"`
	PeerMagic uint32 `json:"peer_magic"`
	// PeerAuth is the Authentication-Protocol the peer asked for (0: none).
	PeerAuth uint16 `json:"peer_auth,omitempty"`
}

// Engine is a deliberately small LCP: it converges with pppd-like peers and
// with itself, then keeps echoing. It is safe for concurrent use; frames are
// sent outside the lock so a slow writer never blocks Input.
type Engine struct {
	opt  Options
	send func(frame []byte) error

	mu       sync.Mutex
	c        Counters
	nextID   uint8
	reqID    uint8
	reqSent  time.Time
	ackRcvd  bool
	ackSent  bool
	askMagic bool
	askAuth  bool
	echoID   uint8
	lastEcho time.Time
	started  bool
}

// NewEngine returns an engine that hands every outgoing PPP frame (address
// and control field included, no FCS) to send.
func NewEngine(opt Options, send func(frame []byte) error) *Engine {
	if opt.RestartInterval <= 0 {
		opt.RestartInterval = 500 * time.Millisecond
	}
	e := &Engine{opt: opt, send: send, askMagic: true, askAuth: opt.AuthPAP}
	e.c.Magic = opt.Magic
	for e.c.Magic == 0 {
		e.c.Magic = rand.Uint32()
	}
	e.nextID = uint8(rand.Uint32())
	return e
}

// Counters returns a snapshot of the counters.
func (e *Engine) Counters() Counters {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c
}

// Tick sends what is due at now: the first or a retransmitted
// Configure-Request while the peer has not acked ours, and Echo-Requests once
// opened. Call it every 100 ms or so.
func (e *Engine) Tick(now time.Time) error {
	e.mu.Lock()
	var out [][]byte
	if !e.ackRcvd && (!e.started || now.Sub(e.reqSent) >= e.opt.RestartInterval) {
		if !e.started {
			e.started = true
			e.reqID = e.id()
		}
		e.reqSent = now
		out = append(out, e.confReq())
	}
	if e.c.LCPOpened && e.opt.EchoInterval > 0 && now.Sub(e.lastEcho) >= e.opt.EchoInterval {
		e.lastEcho = now
		e.echoID++
		out = append(out, lcp(codeEchoReq, e.echoID, be32(e.c.Magic)))
		e.c.EchoReqSent++
	}
	e.mu.Unlock()
	return e.flush(out)
}

// Input handles one received PPP frame (HDLC already removed). Address and
// control field and protocol field compression are accepted.
func (e *Engine) Input(frame []byte) error {
	e.mu.Lock()
	out := e.input(frame, time.Now())
	e.mu.Unlock()
	return e.flush(out)
}

// CountBadFCS adds n frames with a bad FCS, seen by the framing layer.
func (e *Engine) CountBadFCS(n uint64) {
	e.mu.Lock()
	e.c.BadFCS += n
	e.mu.Unlock()
}

func (e *Engine) flush(out [][]byte) error {
	var first error
	for _, f := range out {
		if err := e.send(f); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		e.mu.Lock()
		e.c.FramesOut++
		e.mu.Unlock()
	}
	return first
}

func (e *Engine) logf(format string, args ...any) {
	if e.opt.Logf != nil {
		e.opt.Logf(format, args...)
	}
}

func (e *Engine) id() uint8 {
	e.nextID++
	return e.nextID
}

func (e *Engine) input(f []byte, now time.Time) [][]byte {
	e.c.FramesIn++
	if len(f) >= 2 && f[0] == 0xFF && f[1] == 0x03 {
		f = f[2:]
	}
	if len(f) < 1 {
		return nil
	}
	var proto uint16
	if f[0]&1 == 1 { // protocol field compressed to one byte
		proto, f = uint16(f[0]), f[1:]
	} else {
		if len(f) < 2 {
			return nil
		}
		proto, f = binary.BigEndian.Uint16(f), f[2:]
	}
	if proto != ProtoLCP {
		if !e.c.LCPOpened {
			return nil // RFC 1661: silently discard before opened
		}
		data := append(be16(proto), f...)
		return [][]byte{lcp(codeProtoRej, e.id(), data)}
	}
	if len(f) < 4 {
		return nil
	}
	code, id := f[0], f[1]
	n := int(binary.BigEndian.Uint16(f[2:]))
	if n < 4 || n > len(f) {
		return nil
	}
	data := f[4:n] // drop padding after Length
	switch code {
	case codeConfReq:
		return e.onConfReq(id, data, now)
	case codeConfAck:
		if id == e.reqID && !e.ackRcvd && !e.c.LCPOpened {
			e.ackRcvd = true
			e.maybeOpen()
		}
	case codeConfNak, codeConfRej:
		if id != e.reqID || e.ackRcvd {
			return nil
		}
		e.adjust(code, data)
		e.reqID = e.id()
		e.reqSent = now
		return [][]byte{e.confReq()}
	case codeTermReq:
		e.logf("lcp: terminate-request received")
		e.c.LCPOpened, e.ackRcvd, e.ackSent = false, false, false
		e.reqID = e.id()
		e.reqSent = now // restart negotiation after one restart interval
		return [][]byte{lcp(codeTermAck, id, nil)}
	case codeEchoReq:
		e.c.EchoReqRecv++
		// Answered even before opened: the peer only echoes once it thinks
		// the link is up, and a lab peer that stays mute helps nobody.
		rep := be32(e.c.Magic)
		if len(data) > 4 {
			rep = append(rep, data[4:]...)
		}
		e.c.EchoRepSent++
		return [][]byte{lcp(codeEchoRep, id, rep)}
	case codeEchoRep:
		e.c.EchoRepRecv++
	case codeTermAck, codeCodeRej, codeProtoRej, codeDiscardRq:
	default:
		return [][]byte{lcp(codeCodeRej, e.id(), f[:n])}
	}
	return nil
}

func (e *Engine) maybeOpen() {
	if e.ackRcvd && e.ackSent && !e.c.LCPOpened {
		e.c.LCPOpened = true
		e.logf("lcp: opened (magic %08x, peer %08x)", e.c.Magic, e.c.PeerMagic)
	}
}

// onConfReq acks a request made only of options we can live with and rejects
// the rest: MRU, ACCM, Authentication-Protocol, Magic-Number, PFC, ACFC.
func (e *Engine) onConfReq(id uint8, data []byte, now time.Time) [][]byte {
	var rej []byte
	var magic uint32
	var auth uint16
	for p := data; len(p) > 0; {
		if len(p) < 2 || p[1] < 2 || int(p[1]) > len(p) {
			return nil // malformed: discard the whole request
		}
		t, l := p[0], int(p[1])
		opt := p[:l]
		p = p[l:]
		ok := false
		switch t {
		case optMRU:
			ok = l == 4
		case optACCM:
			ok = l == 6
		case optAuth:
			ok = l >= 4
			if ok {
				auth = binary.BigEndian.Uint16(opt[2:])
			}
		case optMagic:
			ok = l == 6
			if ok {
				magic = binary.BigEndian.Uint32(opt[2:])
			}
		case optPFC, optACFC:
			ok = l == 2
		}
		if !ok {
			rej = append(rej, opt...)
		}
	}
	if len(rej) > 0 {
		e.logf("lcp: rejecting options % x", rej)
		e.ackSent = false
		return [][]byte{lcp(codeConfRej, id, rej)}
	}
	var out [][]byte
	if e.c.LCPOpened {
		// RFC 1661: a Configure-Request in Opened restarts negotiation.
		e.logf("lcp: peer renegotiates")
		e.c.LCPOpened, e.ackRcvd = false, false
		e.reqID = e.id()
		e.reqSent = now
		out = append(out, e.confReq())
	}
	e.c.PeerMagic, e.c.PeerAuth = magic, auth
	e.ackSent = true
	out = append(out, lcp(codeConfAck, id, data))
	e.maybeOpen()
	return out
}

// adjust changes our next Configure-Request after a Nak or Reject: a naked
// Magic-Number is replaced, anything rejected (or a naked authentication
// protocol) is no longer asked for.
func (e *Engine) adjust(code uint8, data []byte) {
	for p := data; len(p) >= 2 && p[1] >= 2 && int(p[1]) <= len(p); p = p[p[1]:] {
		switch t := p[0]; {
		case t == optMagic && code == codeConfNak:
			e.c.Magic = rand.Uint32() | 1
		case t == optMagic:
			e.askMagic = false
		case t == optAuth:
			e.askAuth = false
		}
	}
}

func (e *Engine) confReq() []byte {
	var opts []byte
	if e.askMagic {
		opts = append(opts, optMagic, 6)
		opts = append(opts, be32(e.c.Magic)...)
	}
	if e.askAuth {
		opts = append(opts, optAuth, 4, byte(ProtoPAP>>8), byte(ProtoPAP&0xFF))
	}
	return lcp(codeConfReq, e.reqID, opts)
}

// lcp builds a whole PPP frame: FF 03, protocol LCP, code, id, length, data.
func lcp(code, id uint8, data []byte) []byte {
	f := make([]byte, 0, 8+len(data))
	f = append(f, 0xFF, 0x03, byte(ProtoLCP>>8), byte(ProtoLCP&0xFF), code, id)
	f = append(f, be16(uint16(4+len(data)))...)
	return append(f, data...)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
