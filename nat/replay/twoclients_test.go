package replay_test

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/nat/replay"
)

// The chapcrack sample's conversation: pptp-linux 192.168.1.102 (source
// port 48550, Call ID 0) -> pptpd 198.252.153.26 (Call ID 30720).
var (
	client1   = netip.MustParseAddr("192.168.1.102")
	client2   = netip.MustParseAddr("192.168.1.103")
	pacAddr   = netip.MustParseAddr("198.252.153.26")
	insideNet = []string{"192.168.1.0/24"}
)

const (
	client1Port = 48550
	client2Port = 48551
	firstPAC    = 30720
	// secondPAC is the PAC's Call ID for the second client's call: pptpd
	// numbers its calls in steps of 128.
	secondPAC = firstPAC + 128
	// copyDelay shifts the second conversation so that the two interleave:
	// OCRQ 1, OCRQ 2, OCRP 1, OCRP 2 (the PAC answers after 37 ms).
	copyDelay = 10 * time.Millisecond
)

// conversation returns the input's PPTP packets between a and b.
func conversation(in []packet, a, b netip.Addr) []packet {
	var out []packet
	for _, p := range in {
		if p.ip == nil || !isPPTP(p.ip) {
			continue
		}
		if (src(p.ip) == a && dst(p.ip) == b) || (src(p.ip) == b && dst(p.ip) == a) {
			out = append(out, packet{ts: p.ts, ip: append([]byte(nil), p.ip...)})
		}
	}
	return out
}

// eachMsg calls f on every whole control message at the start of payload
// (the sample carries one message per segment).
func eachMsg(payload []byte, f func(m []byte)) {
	for len(payload) >= 12 {
		n := int(binary.BigEndian.Uint16(payload))
		if n < 12 || n > len(payload) || binary.BigEndian.Uint32(payload[4:]) != 0x1A2B3C4D {
			return
		}
		f(payload[:n])
		payload = payload[n:]
	}
}

// secondClient turns one packet of the sample's conversation into what a
// second client, 192.168.1.103 on source port 48551 with the same inside
// Call ID 0, would exchange with the same pptpd, which gives the second
// call its own Call ID (OCRP @12, GRE to the PAC, CDN @12, SLI from the
// PNS). Checksums are recomputed from scratch.
func secondClient(p packet) packet {
	ip := append([]byte(nil), p.ip...)
	c1, c2 := client1.As4(), client2.As4()
	for _, off := range []int{12, 16} {
		if [4]byte(ip[off:off+4]) == c1 {
			copy(ip[off:], c2[:])
		}
	}
	if isTCP(ip) {
		t := l4(ip)
		for _, off := range []int{0, 2} {
			if binary.BigEndian.Uint16(t[off:]) == client1Port {
				binary.BigEndian.PutUint16(t[off:], client2Port)
			}
		}
		eachMsg(tcpPayload(ip), func(m []byte) {
			typ := binary.BigEndian.Uint16(m[8:])
			switch {
			case typ == pptpmsg.OCRP, typ == pptpmsg.CDN:
				binary.BigEndian.PutUint16(m[12:], secondPAC)
			case typ == pptpmsg.SLI && src(ip) == client2:
				binary.BigEndian.PutUint16(m[12:], secondPAC)
			}
		})
	} else if src(ip) == client2 && greCallID(ip) == firstPAC {
		binary.BigEndian.PutUint16(l4(ip)[6:], secondPAC)
	}
	fixChecksums(ip)
	return packet{ts: p.ts.Add(copyDelay), ip: ip}
}

// twoClients builds the two-client capture from the sample's packets: its
// conversation and the second client's copy, interleaved by timestamp.
func twoClients(t testing.TB, in []packet) []packet {
	t.Helper()
	conv := conversation(in, client1, pacAddr)
	if len(conv) == 0 {
		t.Fatal("no conversation in the sample")
	}
	all := append([]packet(nil), conv...)
	for _, p := range conv {
		all = append(all, secondClient(p))
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].ts.Before(all[j].ts) })
	return all
}

// TestTwoClientsSameCallID: two inside clients use Call ID 0 towards one
// server. The first keeps 0 outside, the second keeps the high byte and
// counts the low byte up (1); both round trips are exact and --out pairs
// the IDs up.
func TestTwoClientsSameCallID(t *testing.T) {
	in, _ := readPackets(t, mustRead(t, capturePath(t, "chapcrack__sample.dump")))
	two := twoClients(t, in)
	r := runReplay(t, writeRaw(t, two), insideNet)
	ps := prefixes(t, insideNet)
	checkReplay(t, two, ps, r, true)

	want := []replay.CallSummary{
		withPPP(call(client1.String(), 0, 0, pacAddr.String(), firstPAC, "set-up"), "mschapv2", "128-bit stateless"),
		withPPP(call(client2.String(), 0, 1, pacAddr.String(), secondPAC, "set-up"), "mschapv2", "128-bit stateless"),
	}
	if !reflect.DeepEqual(r.sum.Calls, want) {
		t.Errorf("calls =\n%s\nwant\n%s", fmtCalls(r.sum.Calls), fmtCalls(want))
	}
	if len(r.sum.Dropped) != 0 {
		t.Errorf("dropped %v", r.sum.Dropped)
	}
	if len(r.lan) != len(two) {
		t.Errorf("--lan-out has %d packets, input %d", len(r.lan), len(two))
	}

	// Per connection, as the PAC sees it.
	st := reassemble(r.out)
	port := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(publicIP, p) }
	pacEnd := netip.AddrPortFrom(pacAddr, 1723)
	for _, c := range []struct {
		port       uint16
		outer, pac uint16
	}{{client1Port, 0, firstPAC}, {client2Port, 1, secondPAC}} {
		var ocrq, ccrq, ocrp []ctrlMsg
		for _, m := range st.msgs {
			switch {
			case m.dir == dirKey{port(c.port), pacEnd} && m.typ == pptpmsg.OCRQ:
				ocrq = append(ocrq, m)
			case m.dir == dirKey{port(c.port), pacEnd} && m.typ == pptpmsg.CCRQ:
				ccrq = append(ccrq, m)
			case m.dir == dirKey{pacEnd, port(c.port)} && m.typ == pptpmsg.OCRP:
				ocrp = append(ocrp, m)
			}
		}
		if len(ocrq) != 1 || ocrq[0].u16(12) != c.outer {
			t.Errorf("port %d: OCRQ %v, want one with Call ID %d", c.port, ocrq, c.outer)
		}
		if len(ccrq) != 1 || ccrq[0].u16(12) != c.outer {
			t.Errorf("port %d: CCRQ %v, want one with Call ID %d", c.port, ccrq, c.outer)
		}
		if len(ocrp) != 1 || ocrp[0].u16(14) != c.outer || ocrp[0].u16(12) != c.pac {
			t.Errorf("port %d: OCRP %v, want Call ID %d, Peer Call ID %d", c.port, ocrp, c.pac, c.outer)
		}
	}
	// GRE: from the PAC to the public address by outer ID, to the PAC by
	// its Call ID; each client's share matches the input.
	count := func(pkts []packet, from, to netip.Addr, id uint16) int {
		n := 0
		for _, p := range pkts {
			if isGRE(p.ip) && src(p.ip) == from && dst(p.ip) == to && greCallID(p.ip) == id {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		client     netip.Addr
		outer, pac uint16
	}{{client1, 0, firstPAC}, {client2, 1, secondPAC}} {
		wantIn, wantOut := count(two, pacAddr, c.client, 0), count(two, c.client, pacAddr, c.pac)
		if wantIn == 0 || wantOut == 0 {
			t.Fatalf("%s: no GRE in the input", c.client)
		}
		if got := count(r.out, pacAddr, publicIP, c.outer); got != wantIn {
			t.Errorf("%s: %d GRE from the PAC with Call ID %d in --out, want %d", c.client, got, c.outer, wantIn)
		}
		if got := count(r.out, publicIP, pacAddr, c.pac); got != wantOut {
			t.Errorf("%s: %d GRE to the PAC with Call ID %d in --out, want %d", c.client, got, c.pac, wantOut)
		}
	}
}
