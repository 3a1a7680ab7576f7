package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pptpgw/pptpgw/alg/pptptest"
)

// TestMain lets the test binary act as pptpgw itself, so that exit codes
// are checked through main().
func TestMain(m *testing.M) {
	if os.Getenv("PPTPGW_TEST_MAIN") == "1" {
		os.Args = append([]string{"pptpgw"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

// sample is a real capture from the repository's testdata/pcaps.
func sample(t *testing.T) string {
	t.Helper()
	return pptptest.CapturePath(t, "chapcrack__sample.dump")
}

// replayCmd runs the replay subcommand in-process.
func replayCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = cmdReplay(args, &o, &e)
	return code, o.String(), e.String()
}

// synthetic writes a small raw-IP capture: one GRE v1 packet from outside
// to the inside client (no call: dropped), one TCP packet to port 80
// (skipped), one UDP packet (skipped).
func synthetic(t *testing.T) (path string, ts []time.Time) {
	t.Helper()
	ser := func(ls ...gopacket.SerializableLayer) []byte {
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	ip := func(s, d string, p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: net.ParseIP(s), DstIP: net.ParseIP(d)}
	}
	gre := []byte{0x30, 0x01, 0x88, 0x0b, 0, 2, 0x12, 0x34, 0, 0, 0, 1, 0xff, 0x03}
	tcpIP := ip("192.168.1.10", "203.0.113.5", layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, SYN: true, Window: 100}
	tcp.SetNetworkLayerForChecksum(tcpIP)
	udpIP := ip("192.168.1.10", "203.0.113.5", layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 53, DstPort: 53}
	udp.SetNetworkLayerForChecksum(udpIP)
	pkts := [][]byte{
		ser(ip("203.0.113.5", "192.168.1.10", layers.IPProtocolGRE), gopacket.Payload(gre)),
		ser(tcpIP, tcp),
		ser(udpIP, udp, gopacket.Payload([]byte{1})),
	}
	path = filepath.Join(t.TempDir(), "in.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	for i, p := range pkts {
		at := base.Add(time.Duration(i) * time.Second)
		ts = append(ts, at)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(p), Length: len(p)}, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ts
}

// TestReplayJSONContract: exit 0 and the summary's JSON fields, exactly
// as DESIGN.md "replay" names them.
func TestReplayJSONContract(t *testing.T) {
	dir := t.TempDir()
	out, lan := filepath.Join(dir, "o.pcap"), filepath.Join(dir, "l.pcap")
	code, stdout, stderr := replayCmd("--in", sample(t), "--out", out, "--lan-out", lan,
		"--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if got := keys(raw); !slices.Equal(got, []string{"calls", "dropped", "packets_in", "packets_out", "skipped"}) {
		t.Errorf("summary keys %v", got)
	}
	var sum struct {
		PacketsIn  uint64            `json:"packets_in"`
		PacketsOut uint64            `json:"packets_out"`
		Skipped    uint64            `json:"skipped"`
		Dropped    map[string]uint64 `json:"dropped"`
		Calls      []map[string]any  `json:"calls"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	// chapcrack__sample.dump: 247 frames, 132 of them PPTP (15 TCP 1723,
	// 117 GRE v1), the rest DNS/TLS.
	if sum.PacketsIn != 247 || sum.PacketsOut != 132 || sum.Skipped != 115 || sum.Dropped == nil || len(sum.Dropped) != 0 {
		t.Errorf("summary %+v", sum)
	}
	want := map[string]any{"inside_addr": "192.168.1.102", "inside_call_id": 0.0, "public_addr": "198.51.100.1",
		"outer_call_id": 0.0, "peer_addr": "198.252.153.26", "peer_call_id": 30720.0, "outcome": "set-up",
		"auth": "mschapv2", "mppe": "128-bit stateless"}
	if len(sum.Calls) != 1 || !reflect.DeepEqual(sum.Calls[0], want) {
		t.Errorf("calls %v, want [%v]", sum.Calls, want)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestReplayDropped: GRE of no call is dropped and counted by reason, and
// listed as a dropped call; traffic that is not PPTP is skipped.
func TestReplayDropped(t *testing.T) {
	in, _ := synthetic(t)
	dir := t.TempDir()
	code, stdout, stderr := replayCmd("--in", in, "--out", filepath.Join(dir, "o.pcap"),
		"--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"packets_in": 3.0, "packets_out": 0.0, "skipped": 2.0,
		"dropped": map[string]any{"unknown_call": 1.0},
		"calls": []any{map[string]any{"inside_addr": "192.168.1.10", "inside_call_id": 4660.0, "public_addr": "198.51.100.1",
			"outer_call_id": 4660.0, "peer_addr": "203.0.113.5", "peer_call_id": 0.0, "outcome": "dropped"}},
	}
	if !reflect.DeepEqual(sum, want) {
		t.Errorf("summary\n got %v\nwant %v", sum, want)
	}
}

// TestReplayText: without --json the summary is for people.
func TestReplayText(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := replayCmd("--in", sample(t), "--out", filepath.Join(dir, "o.pcap"),
		"--inside", "192.168.1.102", "--public-ip", "198.51.100.1")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, s := range []string{"packets in 247, out 132", "call set-up", "192.168.1.102:0", "198.252.153.26:30720"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, stdout)
		}
	}
}

// TestReplayBadInput: a wrong flag or an input that cannot be read is one
// line on stderr and exit 2, with nothing on stdout.
func TestReplayBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pcap")
	if err := os.WriteFile(garbage, []byte("this is not a capture file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pcap")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good, _ := synthetic(t)
	out := filepath.Join(dir, "o.pcap")
	ok := []string{"--out", out, "--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1"}
	with := func(extra ...string) []string { return append(append([]string(nil), ok...), extra...) }
	cases := []struct {
		name string
		args []string
		say  string // a word the message must contain
	}{
		{"missing --in", ok, "--in"},
		{"missing file", with("--in", filepath.Join(dir, "nope.pcap")), "nope.pcap"},
		{"directory", with("--in", dir), dir},
		{"not a capture", with("--in", garbage), "garbage.pcap"},
		{"empty file", with("--in", empty), "empty.pcap"},
		{"missing --out", []string{"--in", good, "--inside", "10.0.0.0/8", "--public-ip", "198.51.100.1"}, "--out"},
		{"missing --inside", []string{"--in", good, "--out", out, "--public-ip", "198.51.100.1"}, "--inside"},
		{"missing --public-ip", []string{"--in", good, "--out", out, "--inside", "10.0.0.0/8"}, "public-ip"},
		{"bad --public-ip", []string{"--in", good, "--out", out, "--inside", "10.0.0.0/8", "--public-ip", "198.51.100.300"}, "public-ip"},
		{"IPv6 --public-ip", []string{"--in", good, "--out", out, "--inside", "10.0.0.0/8", "--public-ip", "2001:db8::1"}, "public-ip"},
		{"bad --inside", []string{"--in", good, "--out", out, "--inside", "10.0.0.0/33", "--public-ip", "198.51.100.1"}, "inside"},
		{"word --inside", []string{"--in", good, "--out", out, "--inside", "lan", "--public-ip", "198.51.100.1"}, "inside"},
		{"unknown flag", with("--in", good, "--frobnicate"), "frobnicate"},
		{"stray argument", with("--in", good, "extra"), "extra"},
		{"unwritable --out", []string{"--in", good, "--out", filepath.Join(dir, "no", "such", "dir", "o.pcap"),
			"--inside", "10.0.0.0/8", "--public-ip", "198.51.100.1"}, "o.pcap"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := replayCmd(c.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if !strings.HasSuffix(stderr, "\n") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
			if !strings.Contains(stderr, c.say) {
				t.Errorf("stderr %q does not mention %q", stderr, c.say)
			}
		})
	}
}

// TestReplayOutputFiles: --out and --lan-out are pcap, LINKTYPE_RAW, with
// IPv4 packets at the input's timestamps, to the nanosecond.
func TestReplayOutputFiles(t *testing.T) {
	in := sample(t)
	dir := t.TempDir()
	out, lan := filepath.Join(dir, "o.pcap"), filepath.Join(dir, "l.pcap")
	if code, _, stderr := replayCmd("--in", in, "--out", out, "--lan-out", lan,
		"--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// The input's PPTP packets, in order.
	var want []time.Time
	var wantIP [][]byte
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		ip, _ := p.NetworkLayer().(*layers.IPv4)
		if ip == nil {
			continue
		}
		tcp, _ := p.TransportLayer().(*layers.TCP)
		if ip.Protocol == layers.IPProtocolGRE || (tcp != nil && (tcp.SrcPort == 1723 || tcp.DstPort == 1723)) {
			want = append(want, ci.Timestamp)
			wantIP = append(wantIP, append(append([]byte(nil), ip.Contents...), ip.Payload...))
		}
	}
	for _, name := range []string{out, lan} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 24 {
			t.Fatalf("%s: %d bytes", name, len(b))
		}
		magic := binary.LittleEndian.Uint32(b)
		if magic != 0xa1b23c4d && magic != 0xa1b2c3d4 {
			t.Errorf("%s: magic %#x, not pcap", name, magic)
		}
		if lt := binary.LittleEndian.Uint32(b[20:]); lt != 101 {
			t.Errorf("%s: link type %d, want 101 (LINKTYPE_RAW)", name, lt)
		}
		r, err := pcapgo.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var got []time.Time
		for i := 0; ; i++ {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ci.Timestamp)
			if len(data) < 20 || data[0]>>4 != 4 || ci.CaptureLength != len(data) || ci.Length != len(data) {
				t.Errorf("%s packet %d: not a whole IPv4 packet", name, i+1)
			}
			if name == lan && i < len(wantIP) && !bytes.Equal(data, wantIP[i]) {
				t.Errorf("%s packet %d differs from the input's", name, i+1)
			}
		}
		if !slices.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("%s: %d timestamps, not the input's %d PPTP packets' (first %v vs %v)", name, len(got), len(want), first(got), first(want))
		}
	}
}

func first(ts []time.Time) time.Time {
	if len(ts) == 0 {
		return time.Time{}
	}
	return ts[0]
}

// TestReplayExitCodes runs the binary (this test binary acting as
// pptpgw): exit 0 on success, 2 with one stderr line on bad input.
func TestReplayExitCodes(t *testing.T) {
	in, _ := synthetic(t)
	out := filepath.Join(t.TempDir(), "o.pcap")
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"replay", "--in", in, "--out", out, "--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1", "--json"}, 0},
		{[]string{"replay", "--out", out, "--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1"}, 2},
		{[]string{"replay", "--in", in + ".missing", "--out", out, "--inside", "192.168.1.0/24", "--public-ip", "198.51.100.1"}, 2},
		{[]string{"replay", "--in", in, "--out", out, "--inside", "192.168.1.0/24", "--public-ip", "x"}, 2},
	}
	for _, c := range cases {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "PPTPGW_TEST_MAIN=1")
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.code, e.String())
		}
		if c.code == 2 && strings.Count(e.String(), "\n") != 1 {
			t.Errorf("%v: stderr %q is not one line", c.args, e.String())
		}
		if c.code == 0 && !json.Valid(o.Bytes()) {
			t.Errorf("%v: stdout is not JSON: %q", c.args, o.String())
		}
	}
}
