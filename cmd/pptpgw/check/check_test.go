package check

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/nat/bpf"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// withCounters gives every rule of iptables-save text the counters [p:b].
func withCounters(text, counters string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "-A ") {
			l = counters + " " + l
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

const natSave = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n[3:180] -A POSTROUTING -o wan -j MASQUERADE\nCOMMIT\n"

// good is a healthy gateway: everything passes.
func good() *Facts {
	return &Facts{
		CapEff:           1<<capNetAdmin | 1<<21,
		IPForward:        Sysctl{Value: "1", Present: true},
		HelperAutoAssign: Sysctl{},
		Default:          FlavourNFT,
		Saves: map[string]Save{
			FlavourNFT: {Ran: true, Text: withCounters(rules.SaveText(rules.Config{}), "[7:700]") + natSave},
		},
		NFTRan:        true,
		NFT:           "table ip nat {\n}\n",
		Queues:        []nfq.QueueStats{{Queue: 0, PortID: 100}, {Queue: 1, PortID: 101}},
		RPFilter:      map[string]Sysctl{"all": {Value: "0", Present: true}, "wan": {Value: "2", Present: true}},
		DefaultRoutes: []string{"wan"},
		Links:         []Link{{Name: "lo", MTU: 65536, Up: true}, {Name: "wan", MTU: 1500, Up: true}, {Name: "lan", MTU: 1500, Up: true}},
		GREPath:       "auto",
		BPF: &bpf.Report{Kernel: "6.18.0", KernelOK: true, TCX: true, CapBPF: true, CapNetAdmin: true, JIT: true,
			BPFFS: true, Loads: true},
	}
}

// TestBPFCheck: what the bpf path misses fails --gre-path bpf, warns with
// auto (which takes nf_tables), and does not matter with kernel or queue.
func TestBPFCheck(t *testing.T) {
	missing := &bpf.Report{Kernel: "5.4.0", Missing: []string{"kernel 5.4.0 is older than 5.10", "no CAP_BPF"}}
	for _, tt := range []struct {
		path   string
		report *bpf.Report
		want   Status
		detail string
	}{
		{"auto", good().BPF, OK, "attached with tcx"},
		{"auto", missing, Warn, "--gre-path auto takes nf_tables instead of bpf: kernel 5.4.0 is older than 5.10; no CAP_BPF"},
		{"bpf", missing, Fail, "--gre-path bpf cannot run: kernel 5.4.0"},
		{"kernel", nil, OK, "not used (--gre-path kernel)"},
		{"queue", missing, OK, "not used"},
	} {
		f := good()
		f.GREPath, f.BPF = tt.path, tt.report
		r := results(f)["gre-path-bpf"]
		if r.Status != tt.want || !strings.Contains(r.Detail, tt.detail) || (tt.want != OK) != (r.Fix != "") {
			t.Errorf("%s: %+v, want %s with %q", tt.path, r, tt.want, tt.detail)
		}
	}
}

func results(f *Facts) map[string]Result {
	out := map[string]Result{}
	for _, r := range Run(f) {
		out[r.Name] = r
	}
	return out
}

func TestGoodHost(t *testing.T) {
	rs := Run(good())
	if len(rs) != len(Names()) {
		t.Fatalf("%d results for %d checks", len(rs), len(Names()))
	}
	for _, r := range rs {
		if r.Status != OK || r.Fix != "" || r.Detail == "" {
			t.Errorf("%s: %s %q fix %q", r.Name, r.Status, r.Detail, r.Fix)
		}
	}
	if Failed(rs) {
		t.Error("Failed on a good host")
	}
}

// TestMisconfigurations: each fault, injected into a good host, turns
// exactly its check to warn or fail, with a detail naming it and a fix.
func TestMisconfigurations(t *testing.T) {
	helperRule := "*raw\n:PREROUTING ACCEPT [0:0]\n[0:0] -A PREROUTING -p tcp -m tcp --dport 1723 -j CT --helper pptp\nCOMMIT\n"
	cases := []struct {
		name   string
		inject func(f *Facts)
		check  string
		want   Status
		detail string // substring of the detail
		fix    string // substring of the fix
	}{
		{"no CAP_NET_ADMIN", func(f *Facts) { f.CapEff = 0 }, "cap-net-admin", Fail, "lacks CAP_NET_ADMIN", "sudo"},
		{"forwarding off", func(f *Facts) { f.IPForward.Value = "0" }, "ip-forward", Fail, "ip_forward = 0", "sysctl -w net.ipv4.ip_forward=1"},
		{"iptables CT helper in nft", func(f *Facts) {
			s := f.Saves[FlavourNFT]
			s.Text = strings.Replace(s.Text, "*raw\n", "*raw\n[0:0] -A PREROUTING -p tcp -m tcp --dport 1723 -j CT --helper pptp\n", 1)
			f.Saves[FlavourNFT] = s
		}, "kernel-helper", Fail, "--helper pptp", "iptables-nft -t raw -D PREROUTING -p tcp -m tcp --dport 1723 -j CT --helper pptp"},
		{"iptables CT helper in legacy", func(f *Facts) { f.Saves[FlavourLegacy] = Save{Ran: true, Text: helperRule} },
			"kernel-helper", Fail, "iptables-legacy", "iptables-legacy -t raw -D PREROUTING"},
		{"nft ct helper object in use", func(f *Facts) {
			f.NFT = "table inet fw {\n\tct helper pptp-1723 {\n\t\ttype \"pptp\" protocol tcp\n\t\tl3proto ip\n\t}\n\n\tchain pre {\n\t\ttype filter hook prerouting priority filter; policy accept;\n\t\ttcp dport 1723 ct helper set \"pptp-1723\"\n\t}\n}\n"
		}, "kernel-helper", Fail, `nft ct helper "pptp-1723"`, "ct helper set"},
		{"helper auto-assignment on", func(f *Facts) { f.HelperAutoAssign = Sysctl{Value: "1", Present: true} },
			"helper-autoassign", Fail, "nf_conntrack_helper = 1", "nf_conntrack_helper=0"},
		{"rules missing", func(f *Facts) { f.Saves[FlavourNFT] = Save{Ran: true, Text: natSave} }, "rules", Fail, "not installed", "pptpgw rules install"},
		{"one rule missing", func(f *Facts) {
			s := f.Saves[FlavourNFT]
			var keep []string
			for _, l := range strings.Split(s.Text, "\n") {
				if !strings.Contains(l, "--dport 1723") {
					keep = append(keep, l)
				}
			}
			s.Text = strings.Join(keep, "\n")
			f.Saves[FlavourNFT] = s
		}, "rules", Fail, "missing rule: -t mangle -A PPTPGW-CTL -p tcp -m tcp --dport 1723", "rules remove"},
		{"rules for another queue", func(f *Facts) { f.Rules = rules.Config{Queue: 4} }, "rules", Fail, "differ", "rules remove"},
		{"pptpgw in both flavours", func(f *Facts) {
			f.Saves[FlavourLegacy] = Save{Ran: true, Text: rules.SaveText(rules.Config{Queue: 8})}
		}, "iptables-flavours", Fail, "both iptables-legacy and iptables-nft", "iptables-legacy-save | grep -v PPTPGW | iptables-legacy-restore"},
		{"pptpgw only in the other flavour", func(f *Facts) {
			f.Saves[FlavourLegacy] = Save{Ran: true, Text: rules.SaveText(rules.Config{})}
			f.Saves[FlavourNFT] = Save{Ran: true, Text: natSave}
		}, "iptables-flavours", Fail, "are in iptables-legacy, but `iptables` is iptables-nft", "pptpgw rules install"},
		{"other rules in legacy", func(f *Facts) {
			f.Saves[FlavourLegacy] = Save{Ran: true, Text: "*filter\n:FORWARD ACCEPT [0:0]\n[9:9] -A FORWARD -p 47 -j DROP\nCOMMIT\n"}
		}, "iptables-flavours", Warn, "iptables-legacy also holds 1 rules (tables filter)", "flush"},
		{"daemon not running", func(f *Facts) { f.Queues = nil }, "queues", Fail, "queue(s) 0, 1", "systemctl start pptpgw"},
		{"GRE queue not bound", func(f *Facts) { f.Queues = f.Queues[:1] }, "queues", Fail, "queue(s) 1:", "pptpgw run"},
		{"queue overflow", func(f *Facts) { f.Queues[1].QueueDropped = 40 }, "queues", Warn, "queue 1 dropped 40", "--queues"},
		{"GRE leaves, none arrives", func(f *Facts) {
			s := f.Saves[FlavourNFT]
			var out []string
			for _, l := range strings.Split(s.Text, "\n") {
				if strings.Contains(l, "-A PPTPGW-GRE-IN") {
					l = strings.Replace(l, "[7:700]", "[0:0]", 1)
				}
				out = append(out, l)
			}
			s.Text = strings.Join(out, "\n")
			f.Saves[FlavourNFT] = s
		}, "gre-arriving", Warn, "7 GRE packets left but none arrived", "protocol 47"},
		{"no NAT rule", func(f *Facts) {
			s := f.Saves[FlavourNFT]
			s.Text = strings.Replace(s.Text, natSave, "", 1)
			f.Saves[FlavourNFT] = s
		}, "nat-rule", Warn, "no MASQUERADE or SNAT", "MASQUERADE"},
		{"strict rp_filter, two WAN links", func(f *Facts) {
			f.RPFilter["all"] = Sysctl{Value: "1", Present: true}
			f.RPFilter["wan"] = Sysctl{Value: "1", Present: true}
			f.DefaultRoutes = []string{"wan", "wan2"}
			f.Links = append(f.Links, Link{Name: "wan2", MTU: 1500})
		}, "rp-filter", Warn, "strict reverse-path filtering on wan, wan2", "rp_filter=2"},
		{"PPPoE outside", func(f *Facts) { f.Links[1].MTU = 1400 }, "outside-mtu", Warn, "wan MTU 1400 leaves a PPP MTU of 1356", "mtu N"},
		{"no default route", func(f *Facts) { f.DefaultRoutes = nil }, "outside-mtu", Warn, "no IPv4 default route", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			c.inject(f)
			got := results(f)
			r := got[c.check]
			if r.Status != c.want || !strings.Contains(r.Detail, c.detail) || !strings.Contains(r.Fix, c.fix) {
				t.Errorf("%s: %s %q fix %q\nwant %s with %q, fix with %q", c.check, r.Status, r.Detail, r.Fix, c.want, c.detail, c.fix)
			}
			if c.want != OK && c.fix != "" && r.Fix == "" {
				t.Errorf("%s: no fix", c.check)
			}
			if Failed(Run(f)) != (c.want == Fail) {
				t.Errorf("Failed = %v", Failed(Run(f)))
			}
		})
	}
}

// TestStrictRPFilterSingleWAN: strict mode with one way out is fine.
func TestStrictRPFilterSingleWAN(t *testing.T) {
	f := good()
	f.RPFilter["wan"] = Sysctl{Value: "1", Present: true}
	if r := results(f)["rp-filter"]; r.Status != OK || !strings.Contains(r.Detail, "wan=1") {
		t.Errorf("%+v", r)
	}
}

func TestJSON(t *testing.T) {
	f := good()
	f.IPForward.Value = "0"
	var b bytes.Buffer
	if err := PrintJSON(&b, Run(f)); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Checks []map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(b.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Checks) != len(Names()) {
		t.Fatalf("%d checks", len(body.Checks))
	}
	for _, c := range body.Checks {
		if len(c) != 4 || c["name"] == "" || c["detail"] == "" {
			t.Errorf("check %v: want exactly name, status, detail, fix", c)
		}
		if s := c["status"]; s != "ok" && s != "warn" && s != "fail" {
			t.Errorf("status %q", s)
		}
	}
	if body.Checks[1]["name"] != "ip-forward" || body.Checks[1]["status"] != "fail" || body.Checks[1]["fix"] == "" {
		t.Errorf("ip-forward: %v", body.Checks[1])
	}
}

func TestPrint(t *testing.T) {
	f := good()
	f.Queues = nil
	var b bytes.Buffer
	Print(&b, Run(f))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != len(Names()) {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if !strings.HasPrefix(lines[6], "fail  queues ") || !strings.Contains(lines[6], " -- fix: systemctl start pptpgw") {
		t.Errorf("queues line %q", lines[6])
	}
	if !strings.HasPrefix(lines[0], "ok    cap-net-admin ") || strings.Contains(lines[0], "fix:") {
		t.Errorf("first line %q", lines[0])
	}
}

func TestParseSave(t *testing.T) {
	rs, err := ParseSave("# Generated\n*raw\n:PREROUTING ACCEPT [1:2]\n:X - [0:0]\n[5:300] -A PREROUTING -j X\n-A X -p gre -j ACCEPT\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.Rules("raw", "PREROUTING"); len(r) != 1 || r[0].Packets != 5 || r[0].Bytes != 300 || r[0].Line != "-A PREROUTING -j X" {
		t.Errorf("%+v", r)
	}
	if l, _ := rs.List("raw", "X"); strings.Join(l, "|") != "-N X|-A X -p gre -j ACCEPT" {
		t.Errorf("List %q", l)
	}
	if c, _ := rs.ListChains("raw"); strings.Join(c, ",") != "PREROUTING,X" {
		t.Errorf("ListChains %q", c)
	}
	for _, bad := range []string{"-A X -j Y\n", "*raw\n[5 -A X\nCOMMIT\n", "*raw\n:\nCOMMIT\n"} {
		if _, err := ParseSave(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	text := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"wan\t00000000\t0164A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"lan\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"wan2\t00000000\t0264A8C0\t0003\t0\t0\t10\t00000000\t0\t0\t0\n" +
		"wan\t00000000\t0364A8C0\t0003\t0\t0\t20\t00000000\t0\t0\t0\n"
	if got := parseRoutes(strings.NewReader(text)); strings.Join(got, ",") != "wan,wan2" {
		t.Errorf("%q", got)
	}
}
