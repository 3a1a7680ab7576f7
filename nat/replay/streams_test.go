package replay_test

import (
	"encoding/binary"
	"net/netip"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
)

// dirKey is one direction of a TCP connection.
type dirKey struct{ src, dst netip.AddrPort }

func dirOf(ip []byte) dirKey {
	t := l4(ip)
	return dirKey{
		netip.AddrPortFrom(src(ip), binary.BigEndian.Uint16(t[0:])),
		netip.AddrPortFrom(dst(ip), binary.BigEndian.Uint16(t[2:])),
	}
}

// ctrlMsg is one control message found in a reassembled stream.
type ctrlMsg struct {
	dir   dirKey
	start uint32 // sequence number of its first byte
	typ   uint16
	b     []byte
}

func (m ctrlMsg) u16(off int) uint16 { return binary.BigEndian.Uint16(m.b[off:]) }

// msgPos says where a stream byte lies: in which message and at which offset.
type msgPos struct {
	typ uint16
	off int
}

// streams is the reassembled control streams of a list of packets.
type streams struct {
	msgs []ctrlMsg
	pos  map[dirKey]map[uint32]msgPos
}

// reassemble collects the TCP 1723 payload of pkts per direction by
// sequence number (first copy wins), starting after the SYN or at the
// first segment seen, and walks each direction's contiguous bytes as PPTP
// messages by their Length field, re-synchronising on the magic cookie
// after anything that does not frame.
func reassemble(pkts []packet) streams {
	type dir struct {
		base  uint32
		bytes map[uint32]byte
	}
	dirs := map[dirKey]*dir{}
	var order []dirKey
	for _, p := range pkts {
		if p.ip == nil || !isTCP(p.ip) {
			continue
		}
		k := dirOf(p.ip)
		t := l4(p.ip)
		seq := tcpSeq(p.ip)
		syn := t[13]&0x02 != 0
		d := dirs[k]
		if d == nil {
			d = &dir{base: seq, bytes: map[uint32]byte{}}
			if syn {
				d.base = seq + 1
			}
			dirs[k] = d
			order = append(order, k)
		}
		if syn {
			seq++
		}
		for i, c := range tcpPayload(p.ip) {
			s := seq + uint32(i)
			if int32(s-d.base) < 0 {
				continue
			}
			if _, ok := d.bytes[s]; !ok {
				d.bytes[s] = c
			}
		}
	}
	st := streams{pos: map[dirKey]map[uint32]msgPos{}}
	for _, k := range order {
		d := dirs[k]
		var b []byte
		for s := d.base; ; s++ {
			c, ok := d.bytes[s]
			if !ok {
				break
			}
			b = append(b, c)
		}
		pos := map[uint32]msgPos{}
		st.pos[k] = pos
		for i := 0; i+12 <= len(b); {
			l := int(binary.BigEndian.Uint16(b[i:]))
			typ := binary.BigEndian.Uint16(b[i+8:])
			if binary.BigEndian.Uint32(b[i+4:]) != pptpmsg.Cookie || binary.BigEndian.Uint16(b[i+2:]) != 1 || l < 12 {
				i++
				continue
			}
			if i+l > len(b) {
				break
			}
			st.msgs = append(st.msgs, ctrlMsg{dir: k, start: d.base + uint32(i), typ: typ, b: b[i : i+l]})
			for j := 0; j < l; j++ {
				pos[d.base+uint32(i+j)] = msgPos{typ: typ, off: j}
			}
			i += l
		}
	}
	return st
}

// ownField reports whether offset off of a type-typ message is part of the
// sender's own Call ID (rewritten on the way out).
func ownField(typ uint16, off int) bool {
	switch typ {
	case pptpmsg.OCRQ, pptpmsg.OCRP, pptpmsg.ICRQ, pptpmsg.ICRP, pptpmsg.CCRQ, pptpmsg.CDN:
		return off == 12 || off == 13
	}
	return false
}

// peerField reports whether offset off of a type-typ message is part of the
// receiver's Call ID (restored on the way in).
func peerField(typ uint16, off int) bool {
	switch typ {
	case pptpmsg.OCRP, pptpmsg.ICRP:
		return off == 14 || off == 15
	case pptpmsg.ICCN, pptpmsg.WEN, pptpmsg.SLI:
		return off == 12 || off == 13
	}
	return false
}
