// Package ppp is the small PPP peer shared by the lab's pppeer and pptpcli:
// RFC 1662 async HDLC framing for byte streams (ptys, socketpairs) and an LCP
// engine that negotiates and then exchanges Echo-Request/Reply, so a test can
// see PPP frames cross a gateway in both directions.
package ppp

const (
	hdlcFlag   = 0x7E
	hdlcEscape = 0x7D
	hdlcXor    = 0x20

	fcsInit = 0xFFFF
	fcsGood = 0xF0B8 // residue of a frame whose FCS is right (RFC 1662 C.2)

	maxFrame = 8192 // longer runs without a flag are noise, not frames
)

var fcsTable = func() (t [256]uint16) {
	for b := range t {
		v := uint16(b)
		for range 8 {
			if v&1 != 0 {
				v = v>>1 ^ 0x8408
			} else {
				v >>= 1
			}
		}
		t[b] = v
	}
	return t
}()

// FCS16 continues the RFC 1662 FCS-16 over p.
func FCS16(fcs uint16, p []byte) uint16 {
	for _, b := range p {
		fcs = fcs>>8 ^ fcsTable[byte(fcs)^b]
	}
	return fcs
}

// Encode appends frame (address/control, protocol, information) to dst in
// async HDLC: opening and closing flag, FCS-16, and every byte below 0x20
// escaped (the default ACCM, which LCP must use anyway), plus 0x7D and 0x7E.
func Encode(dst, frame []byte) []byte {
	fcs := FCS16(fcsInit, frame) ^ 0xFFFF
	dst = append(dst, hdlcFlag)
	put := func(b byte) {
		if b < 0x20 || b == hdlcFlag || b == hdlcEscape {
			dst = append(dst, hdlcEscape, b^hdlcXor)
		} else {
			dst = append(dst, b)
		}
	}
	for _, b := range frame {
		put(b)
	}
	put(byte(fcs))
	put(byte(fcs >> 8))
	return append(dst, hdlcFlag)
}

// Decoder splits an async HDLC byte stream into frames. It is not safe for
// concurrent use; one reader goroutine owns it.
type Decoder struct {
	buf    []byte
	esc    bool
	toss   bool // frame overflowed: drop until the next flag
	BadFCS uint64
	Frames uint64
}

// Feed consumes p and calls emit with every complete frame whose FCS is
// right, FCS stripped. The slice passed to emit is only valid during the call.
func (d *Decoder) Feed(p []byte, emit func(frame []byte)) {
	for _, b := range p {
		switch {
		case b == hdlcFlag:
			d.end(emit)
		case d.toss:
		case b == hdlcEscape:
			d.esc = true
		default:
			if d.esc {
				b ^= hdlcXor
				d.esc = false
			}
			if len(d.buf) >= maxFrame {
				d.toss = true
				d.buf = d.buf[:0]
				continue
			}
			d.buf = append(d.buf, b)
		}
	}
}

func (d *Decoder) end(emit func([]byte)) {
	f := d.buf
	d.buf, d.esc, d.toss = d.buf[:0], false, false
	if len(f) == 0 {
		return // back-to-back flags between frames
	}
	if len(f) < 3 || FCS16(fcsInit, f) != fcsGood {
		d.BadFCS++
		return
	}
	d.Frames++
	emit(f[:len(f)-2])
}
