package replay_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
)

// splitPacket cuts a TCP packet into segments at payload offsets cuts
// (ascending, within the payload), adjusting sequence numbers and lengths;
// only the last piece keeps a FIN. Checksums are recomputed from scratch.
func splitPacket(p packet, cuts ...int) []packet {
	t := l4(p.ip)
	hdr := p.ip[:len(p.ip)-len(tcpPayload(p.ip))]
	payload := tcpPayload(p.ip)
	seq := tcpSeq(p.ip)
	flags := t[13]
	bounds := append(append([]int{0}, cuts...), len(payload))
	var out []packet
	for k := 0; k+1 < len(bounds); k++ {
		ip := append(append([]byte(nil), hdr...), payload[bounds[k]:bounds[k+1]]...)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		nt := l4(ip)
		binary.BigEndian.PutUint32(nt[4:], seq+uint32(bounds[k]))
		if k+2 < len(bounds) {
			nt[13] = flags &^ 0x01
		}
		fixChecksums(ip)
		out = append(out, packet{ts: p.ts, ip: ip})
	}
	return out
}

// replaceAt returns pkts with pkts[i] replaced by with.
func replaceAt(pkts []packet, i int, with ...packet) []packet {
	out := make([]packet, 0, len(pkts)+len(with))
	out = append(out, pkts[:i]...)
	out = append(out, with...)
	return append(out, pkts[i+1:]...)
}

// findMsg returns the index of the TCP packet whose payload starts with a
// message of type typ sent to or from port.
func findMsg(t testing.TB, pkts []packet, typ uint16, port uint16) int {
	t.Helper()
	for i, p := range pkts {
		if !isTCP(p.ip) {
			continue
		}
		k := dirOf(p.ip)
		if k.src.Port() != port && k.dst.Port() != port {
			continue
		}
		if pl := tcpPayload(p.ip); len(pl) >= 12 && binary.BigEndian.Uint16(pl[8:]) == typ {
			return i
		}
	}
	t.Fatalf("no message of type %d on port %d", typ, port)
	return -1
}

// outView is what a replay's --out says, independent of segmentation:
// each control direction's byte stream and the GRE packets.
type outView struct {
	streams map[dirKey][]byte
	gre     [][]byte
}

// viewOf concatenates each direction's TCP payload in sequence order
// (retransmitted bytes once) and lists the GRE packets.
func viewOf(t testing.TB, pkts []packet) outView {
	t.Helper()
	v := outView{streams: map[dirKey][]byte{}}
	next := map[dirKey]uint32{}
	for i, p := range pkts {
		if isGRE(p.ip) {
			v.gre = append(v.gre, p.ip)
			continue
		}
		k := dirOf(p.ip)
		seq := tcpSeq(p.ip)
		if l4(p.ip)[13]&0x02 != 0 {
			seq++
			next[k] = seq
		}
		n, ok := next[k]
		if !ok {
			n = seq
		}
		pl := tcpPayload(p.ip)
		d := int32(n - seq)
		switch {
		case d < 0:
			t.Fatalf("packet %d: gap in %v", i+1, k)
		case int(d) < len(pl):
			v.streams[k] = append(v.streams[k], pl[d:]...)
			n = seq + uint32(len(pl))
		}
		if l4(p.ip)[13]&0x01 != 0 && seq+uint32(len(pl)) == n {
			n++ // the FIN takes a sequence number
		}
		next[k] = n
	}
	return v
}

func (v outView) diff(w outView) string {
	if len(v.streams) != len(w.streams) {
		return fmt.Sprintf("%d control directions, want %d", len(v.streams), len(w.streams))
	}
	for k, b := range w.streams {
		if !bytes.Equal(v.streams[k], b) {
			return fmt.Sprintf("control stream %v:\n got %x\nwant %x", k, v.streams[k], b)
		}
	}
	if len(v.gre) != len(w.gre) {
		return fmt.Sprintf("%d GRE packets, want %d", len(v.gre), len(w.gre))
	}
	for i := range w.gre {
		if !bytes.Equal(v.gre[i], w.gre[i]) {
			return fmt.Sprintf("GRE packet %d:\n got %x\nwant %x", i+1, v.gre[i], w.gre[i])
		}
	}
	return ""
}

// checkResegmented replays a re-segmented variant of a conversation and
// compares it with the unsplit run: same calls and outer IDs, the same
// control streams and GRE in --out, valid checksums, and --lan-out equal
// to the variant's input, packet for packet.
func checkResegmented(t testing.TB, name string, variant []packet, inside []string, ref result, refView outView) {
	t.Helper()
	r := runReplay(t, writeRaw(t, variant), inside)
	if !reflect.DeepEqual(r.sum.Calls, ref.sum.Calls) || len(r.sum.Dropped) != 0 {
		t.Fatalf("%s: calls %+v dropped %v, want %+v and none", name, r.sum.Calls, r.sum.Dropped, ref.sum.Calls)
	}
	if len(r.lan) != len(variant) {
		t.Fatalf("%s: --lan-out has %d packets, input %d", name, len(r.lan), len(variant))
	}
	for i := range variant {
		if !bytes.Equal(r.lan[i].ip, variant[i].ip) {
			t.Fatalf("%s: --lan-out packet %d\n got %x\nwant %x", name, i+1, r.lan[i].ip, variant[i].ip)
		}
	}
	for i, o := range r.out {
		if !ipv4ChecksumOK(o.ip) || (isTCP(o.ip) && !tcpChecksumOK(o.ip)) {
			t.Fatalf("%s: --out packet %d: bad checksum", name, i+1)
		}
	}
	if d := viewOf(t, r.out).diff(refView); d != "" {
		t.Fatalf("%s: --out differs from the unsplit run: %s", name, d)
	}
}

// TestResegmentedControl splits the OCRQ and the OCRP into three segments
// at every pair of byte boundaries, on the sample's conversation and on
// the two-client capture (where the second client's Call ID goes 0 -> 1
// on the way out and back on the way in, so the cuts fall inside the
// rewritten fields too, between their two bytes included).
func TestResegmentedControl(t *testing.T) {
	in, _ := readPackets(t, mustRead(t, capturePath(t, "chapcrack__sample.dump")))
	bases := []struct {
		name string
		pkts []packet
		port uint16 // the connection whose messages are cut
	}{
		{"one-client", conversation(in, client1, pacAddr), client1Port},
		{"two-clients", twoClients(t, in), client2Port},
	}
	for _, b := range bases {
		b.pkts = fewGRE(b.pkts, 1)
		ref := runReplay(t, writeRaw(t, b.pkts), insideNet)
		checkReplay(t, b.pkts, prefixes(t, insideNet), ref, true)
		refView := viewOf(t, ref.out)
		for _, typ := range []uint16{pptpmsg.OCRQ, pptpmsg.OCRP} {
			t.Run(fmt.Sprintf("%s/type-%d", b.name, typ), func(t *testing.T) {
				t.Parallel()
				i := findMsg(t, b.pkts, typ, b.port)
				n := len(tcpPayload(b.pkts[i].ip))
				// Every pair of cuts; under -race or -short (ten times
				// slower per replay) the pairs whose first cut falls in
				// the bytes the tracker reads: the header, both Call
				// ID fields and the Result Code (offsets 0..16).
				firstCuts := n
				if raceEnabled || testing.Short() {
					firstCuts = 18
				}
				variants := 0
				for x := 1; x < firstCuts; x++ {
					for y := x + 1; y < n; y++ {
						v := replaceAt(b.pkts, i, splitPacket(b.pkts[i], x, y)...)
						checkResegmented(t, fmt.Sprintf("cut at %d and %d", x, y), v, insideNet, ref, refView)
						variants++
					}
				}
				if want := (n - 1) * (n - 2) / 2; n < 32 || (firstCuts == n && variants != want) {
					t.Fatalf("%d variants of a %d-byte message, want %d", variants, n, want)
				}
			})
		}
		t.Run(b.name+"/coalesced-SCCRP-OCRP", func(t *testing.T) {
			v := coalesce(t, b.pkts, b.port, pptpmsg.SCCRP, pptpmsg.OCRP)
			checkResegmented(t, "SCCRP+OCRP", v, insideNet, ref, refView)
		})
	}
}

// fewGRE keeps the TCP packets and the first n GRE packets of each
// direction of each client: the splits concern the control stream, and
// fewer packets keep the thousands of replays fast.
func fewGRE(pkts []packet, n int) []packet {
	seen := map[[8]byte]int{}
	var out []packet
	for _, p := range pkts {
		if isGRE(p.ip) {
			k := [8]byte(p.ip[12:20])
			if seen[k]++; seen[k] > n {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// coalesce merges the message of type first and the next message of type
// second sent on the same direction of the connection on port into one
// segment, sent when the second was; the first's segment goes, and the
// other end's acknowledgments in between stop short of bytes not sent yet.
func coalesce(t testing.TB, pkts []packet, port uint16, first, second uint16) []packet {
	t.Helper()
	i := findMsg(t, pkts, first, port)
	j := findMsg(t, pkts, second, port)
	a, b := pkts[i], pkts[j]
	if dirOf(a.ip) != dirOf(b.ip) || tcpSeq(a.ip)+uint32(len(tcpPayload(a.ip))) != tcpSeq(b.ip) {
		t.Fatalf("messages %d and %d are not consecutive in one direction", first, second)
	}
	hdr := b.ip[:len(b.ip)-len(tcpPayload(b.ip))]
	ip := append(append(append([]byte(nil), hdr...), tcpPayload(a.ip)...), tcpPayload(b.ip)...)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint32(l4(ip)[4:], tcpSeq(a.ip))
	fixChecksums(ip)
	start, end := tcpSeq(a.ip), tcpSeq(b.ip)
	rev := dirOf(a.ip)
	rev.src, rev.dst = rev.dst, rev.src
	var out []packet
	for k, p := range pkts {
		switch {
		case k == i:
			continue
		case k == j:
			out = append(out, packet{ts: b.ts, ip: ip})
			continue
		case k > i && k < j && isTCP(p.ip) && dirOf(p.ip) == rev:
			ack := binary.BigEndian.Uint32(l4(p.ip)[8:])
			if int32(ack-start) > 0 && int32(ack-end) <= 0 {
				c := append([]byte(nil), p.ip...)
				binary.BigEndian.PutUint32(l4(c)[8:], start)
				fixChecksums(c)
				p = packet{ts: p.ts, ip: c}
			}
		}
		out = append(out, p)
	}
	return out
}
