package replay_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/nat/replay"
)

// captureCase is one capture of testdata/pcaps, how to replay it and what to expect.
type captureCase struct {
	file   string
	inside []string
	// setup: every call's setup is in the capture, so nothing may be
	// dropped and Call IDs in --out must pair up through OCRQ/OCRP alone.
	setup   bool
	dropped map[string]uint64
	calls   []replay.CallSummary
}

func call(inside string, insideID uint16, outer uint16, peer string, peerID uint16, outcome string) replay.CallSummary {
	return replay.CallSummary{InsideAddr: inside, InsideCallID: insideID, PublicAddr: publicIP.String(),
		OuterCallID: outer, PeerAddr: peer, PeerCallID: peerID, Outcome: outcome}
}

var captureCases = []captureCase{
	{
		file: "chapcrack__sample.dump", inside: []string{"192.168.1.102/32"}, setup: true,
		calls: []replay.CallSummary{withPPP(call("192.168.1.102", 0, 0, "198.252.153.26", 30720, "set-up"), "mschapv2", "128-bit stateless")},
	},
	{
		// Connection A (port 52126) is seen from mid-session: its call is
		// picked up from the PAC's SLI; its GRE before that (15 packets,
		// plus the client's GRE between its own SLI and the PAC's) has no
		// call yet. Connection B (port 52266) is set up in the capture.
		file: "pptpcrack__test.pcap", inside: []string{"192.168.43.39/32"},
		dropped: map[string]uint64{"unknown_call": 16},
		calls: []replay.CallSummary{
			call("192.168.43.39", 64688, 64688, "192.168.43.104", 15159, "picked-up"),
			withPPP(call("192.168.43.39", 40265, 40265, "192.168.43.104", 29546, "set-up"), "mschapv2", "128-bit stateless"),
			call("192.168.43.39", 64688, 64688, "192.168.43.104", 0, "dropped"),
			call("192.168.43.39", 0, 0, "192.168.43.104", 15159, "dropped"),
		},
	},
	{
		file: "nDPI__pptp.pcap", inside: []string{"192.168.43.22/32"}, setup: true,
		calls: []replay.CallSummary{call("192.168.43.22", 0, 0, "191.101.61.1", 11755, "set-up")},
	},
	{
		file: "tcpdump__pptp.pcap", inside: []string{"10.1.1.11/32"}, setup: true,
		calls: []replay.CallSummary{call("10.1.1.11", 0, 0, "10.1.1.10", 0, "set-up")},
	},
	{
		file: "packetlife-backup__PPTP_negotiation.cap", inside: []string{"20.0.0.2/32"}, setup: true,
		calls: []replay.CallSummary{withPPP(call("20.0.0.2", 1, 1, "20.0.0.1", 24, "set-up"), "pap", "none")},
	},
	{
		// GRE only, mid-session: no call is known, every packet is dropped.
		file: "flowcontainer__pptp.pcap", inside: []string{"172.16.30.0/24"},
		dropped: map[string]uint64{"unknown_call": 402},
		calls: []replay.CallSummary{
			call("172.16.30.107", 2035, 2035, "155.138.217.96", 0, "dropped"),
			call("172.16.30.107", 0, 0, "155.138.217.96", 55936, "dropped"),
		},
	},
	{
		file: "chapcrack__pptp.cap", inside: []string{"192.168.43.114/32"},
		dropped: map[string]uint64{"unknown_call": 3},
		calls: []replay.CallSummary{
			call("192.168.43.114", 0, 0, "198.252.153.26", 0, "dropped"),
			call("192.168.43.114", 0, 0, "198.252.153.26", 46080, "dropped"),
		},
	},
	{
		// 4in6 GRE: nothing is IPv4 at the network layer, all skipped.
		file: "zeek__gre-pptp.pcap", inside: []string{"16.0.0.0/8"},
		calls: []replay.CallSummary{},
	},
	{
		// Two GRE v1 over IPv4 (dropped: no call), GRE v0 and the 4in6
		// packet skipped.
		file: "PcapPlusPlus__GrePackets.pcap", inside: []string{"192.168.2.65/32"},
		dropped: map[string]uint64{"unknown_call": 2},
		calls: []replay.CallSummary{
			call("192.168.2.65", 0, 0, "192.168.2.254", 6, "dropped"),
		},
	},
	{
		file: "nDPI__gre.pcapng", inside: []string{"10.177.98.84/32"},
		dropped: map[string]uint64{"unknown_call": 1},
		calls: []replay.CallSummary{
			call("10.177.98.84", 38992, 38992, "109.105.228.253", 0, "dropped"),
		},
	},
}

// TestReplayCaptures replays every capture of testdata/pcaps and checks the round
// trip, the outside view and the summary.
func TestReplayCaptures(t *testing.T) {
	dir := capturePath(t, "")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, c := range captureCases {
		covered[c.file] = true
	}
	for _, e := range ents {
		if n := e.Name(); n != "INDEX.md" && !covered[n] {
			t.Errorf("capture %s has no test case", n)
		}
	}
	for _, c := range captureCases {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			in, _ := readPackets(t, b)
			r := runReplay(t, b, c.inside)
			checkReplay(t, in, prefixes(t, c.inside), r, c.setup)
			if c.dropped == nil {
				c.dropped = map[string]uint64{}
			}
			if !reflect.DeepEqual(r.sum.Dropped, c.dropped) {
				t.Errorf("dropped = %v, want %v", r.sum.Dropped, c.dropped)
			}
			if !reflect.DeepEqual(r.sum.Calls, c.calls) {
				t.Errorf("calls =\n%s\nwant\n%s", fmtCalls(r.sum.Calls), fmtCalls(c.calls))
			}
		})
	}
}

func fmtCalls(cs []replay.CallSummary) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %+v\n", c)
	}
	return b.String()
}

// checkReplay checks what every replay must give, whatever the capture:
//   - --lan-out is the input's PPTP packets, byte for byte with the IP
//     header, less exactly the dropped ones (none when setup is true);
//   - --out holds the same packets in the same order, with no inside
//     address in any IP header, valid IPv4 and TCP checksums, and only
//     addresses, Call IDs and checksums changed;
//   - the Call IDs in --out pair up (checkOutIDs).
func checkReplay(t *testing.T, in []packet, ps []netip.Prefix, r result, setup bool) {
	t.Helper()
	pptp, skipped := pptpPackets(in, ps)
	s := r.sum
	if s.PacketsIn != uint64(len(in)) || s.Skipped != uint64(skipped) {
		t.Errorf("packets_in %d skipped %d, want %d and %d", s.PacketsIn, s.Skipped, len(in), skipped)
	}
	var dropped uint64
	for _, n := range s.Dropped {
		dropped += n
	}
	if setup && dropped != 0 {
		t.Errorf("dropped %v in a capture with its call setup", s.Dropped)
	}
	// --lan-out as a subsequence of the input's PPTP packets.
	j := 0
	for i := 0; i < len(r.lan); i++ {
		for j < len(pptp) && !(bytes.Equal(pptp[j].ip, r.lan[i].ip) && pptp[j].ts.Equal(r.lan[i].ts)) {
			j++
		}
		if j == len(pptp) {
			t.Fatalf("--lan-out packet %d (%s) is not in the input in order:\n%x", i+1, r.lan[i].ts, r.lan[i].ip)
		}
		j++
	}
	if missing := uint64(len(pptp) - len(r.lan)); missing != dropped {
		t.Errorf("%d input PPTP packets missing from --lan-out, %d dropped", missing, dropped)
	}
	if len(r.out) != len(r.lan) || s.PacketsOut != uint64(len(r.out)) {
		t.Fatalf("--out has %d packets, --lan-out %d, packets_out %d", len(r.out), len(r.lan), s.PacketsOut)
	}
	inStreams := reassemble(r.lan)
	for i, o := range r.out {
		n := r.lan[i]
		if !o.ts.Equal(n.ts) {
			t.Fatalf("--out packet %d at %s, its --lan-out twin at %s", i+1, o.ts, n.ts)
		}
		if insideOf(ps, src(o.ip)) || insideOf(ps, dst(o.ip)) {
			t.Errorf("--out packet %d: inside address in %s -> %s", i+1, src(o.ip), dst(o.ip))
		}
		if !ipv4ChecksumOK(o.ip) {
			t.Errorf("--out packet %d: bad IPv4 header checksum", i+1)
		}
		if isTCP(o.ip) && !tcpChecksumOK(o.ip) {
			t.Errorf("--out packet %d: bad TCP checksum", i+1)
		}
		if d := maskedDiff(o.ip, n.ip, ps, inStreams); d != "" {
			t.Errorf("--out packet %d differs from the input beyond addresses, Call IDs and checksums: %s", i+1, d)
		}
	}
	checkOutIDs(t, r.out, s, !setup)
}

// maskedDiff compares an --out packet with its input packet: the IP header
// may differ only in the checksum and the address that the gateway
// translates, TCP only in its checksum and the Call ID fields the direction
// rewrites, GRE only in its Call ID.
func maskedDiff(out, in []byte, ps []netip.Prefix, st streams) string {
	if len(out) != len(in) {
		return fmt.Sprintf("length %d, input %d", len(out), len(in))
	}
	outbound := insideOf(ps, src(in))
	ihl := int(in[0]&0x0f) * 4
	if outbound {
		if src(out) != publicIP || dst(out) != dst(in) {
			return fmt.Sprintf("outbound %s -> %s became %s -> %s", src(in), dst(in), src(out), dst(out))
		}
	} else if dst(out) != publicIP || src(out) != src(in) {
		return fmt.Sprintf("inbound %s -> %s became %s -> %s", src(in), dst(in), src(out), dst(out))
	}
	var pos map[uint32]msgPos
	var seq uint32
	if isTCP(in) {
		pos = st.pos[dirOf(in)]
		seq = tcpSeq(in)
		if l4(in)[13]&0x02 != 0 {
			seq++
		}
	}
	payloadAt := 0
	if isTCP(in) {
		payloadAt = ihl + int(l4(in)[12]>>4)*4
	}
	for i := range in {
		if in[i] == out[i] {
			continue
		}
		switch {
		case i >= 10 && i < 20: // header checksum, addresses
		case isTCP(in) && (i == ihl+16 || i == ihl+17): // TCP checksum
		case isGRE(in) && (i == ihl+6 || i == ihl+7): // GRE Call ID
		case isTCP(in) && i >= payloadAt:
			p, ok := pos[seq+uint32(i-payloadAt)]
			if !ok || (outbound && !ownField(p.typ, p.off)) || (!outbound && !peerField(p.typ, p.off)) {
				return fmt.Sprintf("payload byte %d (message type %d offset %d, found %v) %#02x -> %#02x",
					i-payloadAt, p.typ, p.off, ok, in[i], out[i])
			}
		default:
			return fmt.Sprintf("byte %d %#02x -> %#02x", i, in[i], out[i])
		}
	}
	return ""
}

// checkOutIDs parses --out as the peers see it: every OCRP's Peer Call ID
// is the Call ID of an OCRQ on its connection; GRE from a peer to the
// public address carries an outer ID the peer learnt from an OCRQ, GRE to
// the peer a Call ID the peer gave in an OCRP; outer IDs towards one peer
// are distinct across connections; the summary agrees. With midSession,
// IDs learnt from SLI, CCRQ and CDN count too (setup not in the capture).
func checkOutIDs(t *testing.T, out []packet, s *replay.Summary, midSession bool) {
	t.Helper()
	st := reassemble(out)
	outer := map[netip.Addr]map[uint16]dirKey{} // peer -> outer ID -> connection (public -> peer)
	pac := map[netip.Addr]map[uint16]bool{}     // peer -> Call IDs the peer gave
	pair := map[netip.Addr]map[uint16]uint16{}  // peer -> outer ID -> peer's Call ID
	add := func(m map[netip.Addr]map[uint16]bool, a netip.Addr, id uint16) {
		if m[a] == nil {
			m[a] = map[uint16]bool{}
		}
		m[a][id] = true
	}
	addOuter := func(k dirKey, id uint16) {
		p := k.dst.Addr()
		if outer[p] == nil {
			outer[p] = map[uint16]dirKey{}
		}
		if prev, ok := outer[p][id]; ok && prev != k {
			t.Errorf("outer Call ID %d towards %s used by two connections: %v and %v", id, p, prev, k)
		}
		outer[p][id] = k
	}
	fromPublic := func(k dirKey) bool { return k.src.Addr() == publicIP }
	for _, m := range st.msgs {
		if fromPublic(m.dir) {
			switch {
			case m.typ == pptpmsg.OCRQ:
				addOuter(m.dir, m.u16(12))
			case midSession && m.typ == pptpmsg.CCRQ:
				addOuter(m.dir, m.u16(12))
			case midSession && m.typ == pptpmsg.SLI:
				add(pac, m.dir.dst.Addr(), m.u16(12))
			}
			continue
		}
		p := m.dir.src.Addr()
		rev := dirKey{m.dir.dst, m.dir.src}
		switch {
		case m.typ == pptpmsg.OCRP:
			add(pac, p, m.u16(12))
			if k, ok := outer[p][m.u16(14)]; !ok || k != rev {
				t.Errorf("OCRP from %s: Peer Call ID %d is no OCRQ's Call ID on its connection", p, m.u16(14))
			}
			if pair[p] == nil {
				pair[p] = map[uint16]uint16{}
			}
			pair[p][m.u16(14)] = m.u16(12)
		case midSession && (m.typ == pptpmsg.CDN):
			add(pac, p, m.u16(12))
		case midSession && (m.typ == pptpmsg.SLI):
			addOuter(rev, m.u16(12))
		}
	}
	for i, o := range out {
		if !isGRE(o.ip) {
			continue
		}
		id := greCallID(o.ip)
		if dst(o.ip) == publicIP {
			if _, ok := outer[src(o.ip)][id]; !ok {
				t.Errorf("--out packet %d: GRE from %s to the public address with Call ID %d, no call has it", i+1, src(o.ip), id)
			}
		} else if !pac[dst(o.ip)][id] {
			t.Errorf("--out packet %d: GRE to %s with Call ID %d the peer never gave", i+1, dst(o.ip), id)
		}
	}
	for _, c := range s.Calls {
		p := netip.MustParseAddr(c.PeerAddr)
		switch c.Outcome {
		case "set-up":
			if got, ok := pair[p][c.OuterCallID]; !ok || got != c.PeerCallID {
				t.Errorf("summary call %+v: --out pairs outer ID %d with the peer's %d (found %v)", c, c.OuterCallID, got, ok)
			}
		case "picked-up":
			if _, ok := outer[p][c.OuterCallID]; !ok {
				t.Errorf("summary call %+v: outer ID not in --out", c)
			}
		}
	}
}

// TestReplayTshark cross-checks one --out with Wireshark's dissector.
func TestReplayTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	in, _ := readPackets(t, mustRead(t, capturePath(t, "chapcrack__sample.dump")))
	two := twoClients(t, in)
	r := runReplay(t, writeRaw(t, two), []string{"192.168.1.0/24"})
	path := filepath.Join(t.TempDir(), "out.pcap")
	if err := os.WriteFile(path, r.outPcap, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=,",
		"-e", "ip.src", "-e", "ip.dst", "-e", "pptp.control_message_type",
		"-e", "pptp.call_id", "-e", "pptp.peer_call_id", "-e", "gre.key.call_id")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(r.out) {
		t.Fatalf("tshark shows %d packets, --out has %d", len(lines), len(r.out))
	}
	pub, peer := publicIP.String(), "198.252.153.26"
	var ocrq, ocrpPeer, ocrpOwn []string
	greIn, greOut := map[string]int{}, map[string]int{}
	for _, l := range lines {
		f := strings.Split(l, ",")
		if len(f) != 6 {
			t.Fatalf("tshark line %q", l)
		}
		if f[0] != pub && f[1] != pub {
			t.Errorf("tshark: packet %s -> %s does not involve the public address", f[0], f[1])
		}
		switch {
		case f[2] == "7":
			ocrq = append(ocrq, f[3])
		case f[2] == "8":
			ocrpOwn, ocrpPeer = append(ocrpOwn, f[3]), append(ocrpPeer, f[4])
		case f[5] != "" && f[0] == peer:
			greIn[f[5]]++
		case f[5] != "":
			greOut[f[5]]++
		}
	}
	want := []string{"0", "1"}
	if !slices.Equal(ocrq, want) || !slices.Equal(ocrpPeer, want) {
		t.Errorf("tshark: OCRQ Call IDs %v, OCRP Peer Call IDs %v, want both %v", ocrq, ocrpPeer, want)
	}
	if wantOwn := []string{"30720", strconv.Itoa(secondPAC)}; !slices.Equal(ocrpOwn, wantOwn) {
		t.Errorf("tshark: OCRP Call IDs %v, want %v", ocrpOwn, wantOwn)
	}
	if len(greIn) != 2 || greIn["0"] == 0 || greIn["1"] != greIn["0"] {
		t.Errorf("tshark: GRE to the public address by Call ID %v, want 0 and 1 equally", greIn)
	}
	if len(greOut) != 2 || greOut["30720"] == 0 || greOut[strconv.Itoa(secondPAC)] != greOut["30720"] {
		t.Errorf("tshark: GRE to the peer by Call ID %v, want 30720 and %d equally", greOut, secondPAC)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
