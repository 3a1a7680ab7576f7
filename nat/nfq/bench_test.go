package nfq

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkBatch is one full batch of the receive loop over a socket pair
// standing in for the kernel: recvBatch packets of 64 bytes (a third
// accepted, a third dropped, a third rewritten and marked) received with
// one recvmmsg, handled, and answered with one write. The per-packet
// figure is the loop's own cost; the kernel's is not in it.
func BenchmarkBatch(b *testing.B) {
	r, q, kernel := batchQueue(b)
	var in [][]byte
	for i := range recvBatch {
		in = append(in, packetDatagram(b, uint32(i), 0, bytes.Repeat([]byte{"adm"[i%3]}, 64)))
	}
	out := make([]byte, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for _, dg := range in {
			unix.Write(kernel, dg)
		}
		b.StartTimer()
		n, err := q.rd.next()
		if err != nil || n != len(in) {
			b.Fatal(n, err)
		}
		for i := range n {
			r.datagram(q, batchHandler, q.rd.msg(i))
		}
		r.flush(q)
		b.StopTimer()
		if _, err := unix.Read(kernel, out); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*recvBatch), "ns/packet")
}

// BenchmarkParsePacket is the attribute walk of one queued packet.
func BenchmarkParsePacket(b *testing.B) {
	m := packetDatagram(b, 7, 9, bytes.Repeat([]byte{0x45}, 64))[nlmsgHdrLen:]
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parsePacket(m); !ok {
			b.Fatal("not parsed")
		}
	}
}
