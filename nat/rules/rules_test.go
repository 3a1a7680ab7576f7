package rules

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func strs(rs []Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

const (
	greQ = `-p gre -m u32 --u32 "0>>22&0x3C@0>>16&0x7=1&&0>>22&0x3C@0&0xFFFF=0x880B"`
	icmQ = `-p icmp -m u32 --u32 "0>>22&0x3C@0>>24=3,11&&0>>22&0x3C@16>>16&0xFF=47"`
)

func TestDesiredDefault(t *testing.T) {
	want := []string{
		"-t raw -A PPTPGW-NOTRACK " + greQ + " -j CT --notrack",
		"-t raw -A PPTPGW-NOTRACK " + icmQ + " -m addrtype --dst-type LOCAL -j CT --notrack",
		"-t raw -A PPTPGW-GRE-IN " + greQ + " -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 1",
		"-t raw -A PPTPGW-GRE-IN " + icmQ + " -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 1 --queue-bypass",
		"-t raw -A PPTPGW-GRE-IN -p gre -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 1 --queue-bypass",
		`-t raw -A PPTPGW-SILENCE -p icmp -m u32 --u32 "0>>22&0x3C@0>>16=0x300:0x303,0x305:0x3FF,0xC00:0xCFF&&0>>22&0x3C@16>>16&0xFF=47" -j DROP`,
		"-t mangle -A PPTPGW-CTL -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 0",
		"-t mangle -A PPTPGW-CTL -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0",
		"-t mangle -A PPTPGW-GRE-OUT " + greQ + " -j NFQUEUE --queue-num 1",
		"-t mangle -A PPTPGW-CTL-OUT -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 0",
		"-t mangle -A PPTPGW-CTL-OUT -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0",
		"-t mangle -A PPTPGW-CTL-IN -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 0",
		"-t mangle -A PPTPGW-CTL-IN -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0",
		"-t raw -A PREROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-NOTRACK",
		"-t raw -A PREROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-GRE-IN",
		"-t raw -A OUTPUT -p icmp -j PPTPGW-SILENCE",
		"-t mangle -A FORWARD -p tcp -j PPTPGW-CTL",
		"-t mangle -A POSTROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-GRE-OUT",
		"-t mangle -A OUTPUT ! -o lo -p tcp -j PPTPGW-CTL-OUT",
		"-t mangle -A INPUT ! -i lo -p tcp -j PPTPGW-CTL-IN",
	}
	if d := cmp.Diff(want, strs(Desired(Config{}))); d != "" {
		t.Errorf("Desired(default) (-want +got):\n%s", d)
	}
}

func TestDesiredBalanceFailOpen(t *testing.T) {
	got := strings.Join(strs(Desired(Config{Queue: 4, Queues: 3, FailOpen: true, MarkBit: 0x2})), "\n")
	for _, s := range []string{
		"--sport 1723 -j NFQUEUE --queue-balance 4:6 --queue-bypass\n",
		"--dport 1723 -j NFQUEUE --queue-balance 4:6 --queue-bypass\n",
		"LOCAL -j NFQUEUE --queue-balance 7:9\n",
		"LOCAL -j NFQUEUE --queue-balance 7:9 --queue-bypass\n",
		"-A PPTPGW-GRE-OUT " + greQ + " -j NFQUEUE --queue-balance 7:9\n",
		"-A POSTROUTING -m mark ! --mark 0x2/0x2 -j PPTPGW-GRE-OUT",
	} {
		if !strings.Contains(got, s) {
			t.Errorf("missing %q in\n%s", s, got)
		}
	}
}

// FailOpen changes the control rules (forwarded and the router's own) and
// nothing else.
func TestFailOpenOnlyControl(t *testing.T) {
	a, b := Desired(Config{Queue: 2}), Desired(Config{Queue: 2, FailOpen: true})
	for i := range a {
		same := a[i].key() == b[i].key()
		ctl := a[i].Chain == ChainCTL || a[i].Chain == ChainCTLOut || a[i].Chain == ChainCTLIn
		if ctl == same {
			t.Errorf("rule %s: changed=%v, want changed only in the control chains", a[i], !same)
		}
	}
}

func TestCanonU32(t *testing.T) {
	// As printed by iptables 1.8.9 (both backends).
	for in, want := range map[string]string{
		U32GREv1:          "0x0>>0x16&0x3c@0x0>>0x10&0x7=0x1&&0x0>>0x16&0x3c@0x0&0xffff=0x880b",
		U32ICMPQuotingGRE: "0x0>>0x16&0x3c@0x0>>0x18=0x3,0xb&&0x0>>0x16&0x3c@0x10>>0x10&0xff=0x2f",
	} {
		if got := canonNumbers(in); got != want {
			t.Errorf("canonNumbers(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitLine(t *testing.T) {
	got, err := splitLine(`-A X -p gre -m u32 --u32 "0x0>>0x16&0x3c" -m comment --comment "a \"b\" c" -j CT`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-A", "X", "-p", "gre", "-m", "u32", "--u32", "0x0>>0x16&0x3c", "-m", "comment", "--comment", `a "b" c`, "-j", "CT"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := splitLine(`-A X "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestInstallVerifyRemove(t *testing.T) {
	f := NewMemory()
	_ = f.Append(TableMangle, "FORWARD", "-p", "tcp", "-j", "TCPMSS", "--clamp-mss-to-pmtu")
	before := f.Dump()
	cfg := Config{Queue: 0, Queues: 2}

	if d, err := Verify(f, cfg); err != nil || len(d) != 7+20 {
		t.Fatalf("Verify before install = %d lines, %v; want 7 missing chains + 20 missing rules", len(d), err)
	}
	rep, err := Install(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Chains) != 7 || len(rep.Rules) != 20 {
		t.Errorf("report: %d chains, %d rules; want 7, 20", len(rep.Chains), len(rep.Rules))
	}
	if d, err := Verify(f, cfg); err != nil || len(d) != 0 {
		t.Fatalf("Verify after install: %q, %v", d, err)
	}
	// The operator's rule keeps running first.
	if l, _ := f.List(TableMangle, "FORWARD"); !strings.Contains(l[1], "TCPMSS") || !strings.Contains(l[2], ChainCTL) {
		t.Errorf("mangle FORWARD = %q", l)
	}
	rep2, err := Install(f, cfg)
	if err != nil || !rep2.Empty() {
		t.Fatalf("second Install = %+v, %v; want nothing added", rep2, err)
	}
	if err := Remove(f); err != nil {
		t.Fatal(err)
	}
	if got := f.Dump(); got != before {
		t.Errorf("after Remove:\n%s\nwant:\n%s", got, before)
	}
	if err := Remove(f); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestInstallFillsGapsInPlace(t *testing.T) {
	cfg := Config{Queue: 1}
	f := NewMemory()
	if _, err := Install(f, cfg); err != nil {
		t.Fatal(err)
	}
	want := f.Dump()
	// Take out the first rule of a chain and the first of two raw jumps.
	d := Desired(cfg)
	_ = f.Delete(TableRaw, ChainNoTrack, d[0].Spec...)
	_ = f.Delete(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
	rep, err := Install(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rules) != 2 || len(rep.Chains) != 0 {
		t.Errorf("report %+v, want the two deleted rules", rep)
	}
	if got := f.Dump(); got != want {
		t.Errorf("after repair:\n%s\nwant:\n%s", got, want)
	}
}

func TestInstallConflictChangesNothing(t *testing.T) {
	f := NewMemory()
	if _, err := Install(f, Config{Queue: 0}); err != nil {
		t.Fatal(err)
	}
	before, n := f.Dump(), len(f.Calls)
	_, err := Install(f, Config{Queue: 8})
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("Install with other queue: %v, want ErrMismatch", err)
	}
	if f.Dump() != before || len(f.Calls) != n {
		t.Errorf("conflicting Install changed state: calls %q", f.Calls[n:])
	}
}

// Undo removes only what this Install added: persistent rules stay.
func TestUndoOnlyOwnAdditions(t *testing.T) {
	cfg := Config{}
	f := NewMemory()
	if _, err := Install(f, cfg); err != nil {
		t.Fatal(err)
	}
	// A half-removed install: GRE-OUT gone, CTL's second rule gone.
	_ = f.Delete(TableMangle, "POSTROUTING", "-j", ChainGREOut)
	_ = f.ClearChain(TableMangle, ChainGREOut)
	_ = f.DeleteChain(TableMangle, ChainGREOut)
	_ = f.Delete(TableMangle, ChainCTL, Desired(cfg)[7].Spec...)
	partial := f.Dump()

	rep, err := Install(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Undo(f, rep); err != nil {
		t.Fatal(err)
	}
	if got := f.Dump(); got != partial {
		t.Errorf("after Undo:\n%s\nwant:\n%s", got, partial)
	}
	if err := Undo(f, rep); err != nil {
		t.Errorf("second Undo: %v", err)
	}
}

func TestShow(t *testing.T) {
	f := NewMemory()
	if got, _ := Show(f); len(got) != 0 {
		t.Errorf("Show on empty = %q", got)
	}
	_, _ = Install(f, Config{})
	got, err := Show(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"*mangle",
		":PPTPGW-CTL - [0:0]",
		":PPTPGW-GRE-OUT - [0:0]",
		":PPTPGW-CTL-OUT - [0:0]",
		":PPTPGW-CTL-IN - [0:0]",
		"-A INPUT ! -i lo -p tcp -j PPTPGW-CTL-IN",
		"-A FORWARD -p tcp -j PPTPGW-CTL",
		"-A OUTPUT ! -o lo -p tcp -j PPTPGW-CTL-OUT",
		"-A POSTROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-GRE-OUT",
		"-A PPTPGW-CTL -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 0",
		"-A PPTPGW-CTL -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0",
		`-A PPTPGW-GRE-OUT -p gre -m u32 --u32 "0x0>>0x16&0x3c@0x0>>0x10&0x7=0x1&&0x0>>0x16&0x3c@0x0&0xffff=0x880b" -j NFQUEUE --queue-num 1`,
		"-A PPTPGW-CTL-OUT -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 0",
		"-A PPTPGW-CTL-OUT -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0",
		"-A PPTPGW-CTL-IN -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 0",
		"-A PPTPGW-CTL-IN -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 0",
		"COMMIT",
		"*raw",
		":PPTPGW-NOTRACK - [0:0]",
		":PPTPGW-GRE-IN - [0:0]",
		":PPTPGW-SILENCE - [0:0]",
		"-A PREROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-NOTRACK",
		"-A PREROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-GRE-IN",
		"-A OUTPUT -p icmp -j PPTPGW-SILENCE",
	}
	if d := cmp.Diff(want, got[:len(want)]); d != "" {
		t.Errorf("Show (-want +got):\n%s", d)
	}
	if len(got) != len(want)+7 || got[len(got)-1] != "COMMIT" {
		t.Errorf("Show tail = %q", got[len(want):])
	}
}

func TestHelperAttached(t *testing.T) {
	f := NewMemory()
	_ = f.NewChain(TableRaw, "HELPERS")
	_ = f.Append(TableRaw, "HELPERS", "-p", "tcp", "-m", "tcp", "--dport", "1723", "-j", "CT", "--helper", "pptp")
	_ = f.Append(TableRaw, "PREROUTING", "-p", "tcp", "-m", "tcp", "--dport", "21", "-j", "CT", "--helper", "ftp")
	got, err := HelperAttached(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-t raw -A HELPERS -p tcp -m tcp --dport 1723 -j CT --helper pptp"}
	if !slices.Equal(got, want) {
		t.Errorf("HelperAttached = %q, want %q", got, want)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Mode{
		"iptables v1.8.9 (nf_tables)\n": NFTables,
		"iptables v1.8.9 (legacy)\n":    Legacy,
		"iptables v1.6.1\n":             Legacy,
	} {
		if got := parseVersion(in); got != want {
			t.Errorf("parseVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{Queue: 65534, Queues: 1}).Validate(); err != nil {
		t.Errorf("65534+1 GRE queue 65535: %v", err)
	}
	if err := (Config{Queue: 65535, Queues: 1}).Validate(); err == nil {
		t.Error("queue 65535 with its GRE queue 65536 accepted")
	}
	if _, err := Install(NewMemory(), Config{Queue: 65535}); err == nil {
		t.Error("Install accepted an invalid config")
	}
}

// jumpSpec is the spec of the jump into chain that Desired(cfg) holds.
func jumpSpec(t *testing.T, cfg Config, chain string) []string {
	t.Helper()
	for _, r := range Desired(cfg) {
		if r.IsJump() && jumpTarget(r.Spec) == chain {
			return r.Spec
		}
	}
	t.Fatalf("no jump into %s", chain)
	return nil
}
