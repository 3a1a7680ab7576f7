package alg

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pptpgw/pptpgw/alg/hdr"
)

// tcpPacket builds an IPv4/TCP packet carrying payload, with correct IPv4
// and TCP checksums. optLen bytes of TCP options (NOPs) keep the payload
// offset a multiple of 4, as it always is.
func tcpPacket(seq uint32, optLen int, payload []byte) []byte {
	thl := 20 + optLen
	pkt := make([]byte, 20+thl+len(payload))
	ip := pkt[:20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	ip[8] = 64 // TTL
	ip[9] = 6  // TCP
	copy(ip[12:], []byte{192, 168, 1, 10})
	copy(ip[16:], []byte{203, 0, 113, 7})
	binary.BigEndian.PutUint16(ip[10:], ^csum(0, ip))

	tcp := pkt[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40123)
	binary.BigEndian.PutUint16(tcp[2:], 1723)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 0x01020304)
	tcp[12] = byte(thl/4) << 4
	tcp[13] = 0x18 // PSH ACK
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	for i := 20; i < thl; i++ {
		tcp[i] = 1 // NOP
	}
	copy(tcp[thl:], payload)
	binary.BigEndian.PutUint16(tcp[16:], tcpChecksum(pkt))
	return pkt
}

// tcpChecksum computes the TCP checksum of an IPv4 packet from scratch
// (RFC 793 pseudo-header: addresses, zero, protocol, TCP length), with the
// checksum field taken as zero.
func tcpChecksum(pkt []byte) uint16 {
	ihl := int(pkt[0]&0x0f) * 4
	tcp := pkt[ihl:]
	var sum uint32
	sum += uint32(csum(0, pkt[12:20])) // source and destination addresses
	sum += uint32(pkt[9])
	sum += uint32(len(tcp))
	sum += uint32(csum(0, tcp[:16]))
	sum += uint32(csum(0, tcp[18:]))
	return ^fold(sum)
}

// updateChecksum is RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), with the
// tracker's Sum as the "~m + m'" part: what nat does with it.
var updateChecksum = hdr.Update

// Sum applied incrementally to a real TCP checksum gives the checksum
// recomputed from scratch, for rewrites at even and odd payload offsets,
// odd payload lengths, replayed retransmissions and several messages per
// segment.
func TestSumTCP(t *testing.T) {
	in, _, _ := expect(testStream)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, optLen := range []int{0, 12} {
		for trial := range 300 {
			t.Run(fmt.Sprintf("opt%d/%d", optLen, trial), func(t *testing.T) {
				isn := rng.Uint32()
				c := newConn(t, isn, false)
				// Random segments, some resent, some overlapping.
				sent := 0
				for sent < len(in) {
					from := sent
					if rng.IntN(4) == 0 {
						from = max(0, sent-rng.IntN(40))
					}
					to := min(len(in), sent+1+rng.IntN(80))
					pkt := tcpPacket(c.seq(from), optLen, in[from:to])
					payload := pkt[40+optLen:]
					r := c.s.Segment(c.seq(from), false, false, payload, &c.h)
					old := binary.BigEndian.Uint16(pkt[36:])
					binary.BigEndian.PutUint16(pkt[36:], updateChecksum(old, r.Sum))
					if want := tcpChecksum(pkt); binary.BigEndian.Uint16(pkt[36:]) != want {
						t.Fatalf("segment [%d,%d) (Sum %#x): incremental checksum %#04x, recomputed %#04x",
							from, to, r.Sum, binary.BigEndian.Uint16(pkt[36:]), want)
					}
					if r.Modified != (r.Sum != 0) {
						t.Errorf("segment [%d,%d): Modified %v with Sum %#x", from, to, r.Modified, r.Sum)
					}
					sent = to
				}
			})
		}
	}
}

// Edge values: a Call ID 0xffff becoming 0x0000 and back, a change that
// leaves the checksum's one's complement sum at zero.
func TestSumEdges(t *testing.T) {
	for _, id := range []uint16{0x0000, 0xffff, 0x00ff, 0xff00, 0xfeff, 0x7f80} {
		for _, cut := range []int{0, 12, 13, 14, 16} {
			msg := withCallIDs(OCRP, id, ^id)
			c := newConn(t, 0xffff, false)
			pkt1 := tcpPacket(c.seq(0), 0, msg[:cut])
			pkt2 := tcpPacket(c.seq(cut), 0, msg[cut:])
			for _, pkt := range [][]byte{pkt1, pkt2} {
				seq := binary.BigEndian.Uint32(pkt[24:])
				r := c.s.Segment(seq, false, false, pkt[40:], &c.h)
				binary.BigEndian.PutUint16(pkt[36:], updateChecksum(binary.BigEndian.Uint16(pkt[36:]), r.Sum))
				if got, want := binary.BigEndian.Uint16(pkt[36:]), tcpChecksum(pkt); got != want {
					t.Errorf("id %#04x cut %d: incremental %#04x, recomputed %#04x", id, cut, got, want)
				}
			}
		}
	}
}
