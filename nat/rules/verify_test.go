package rules

import (
	"strings"
	"testing"
)

func TestVerifyDetects(t *testing.T) {
	cfg := Config{Queue: 3}
	tests := []struct {
		name   string
		mutate func(f *Memory)
		cfg    Config
		want   []string // substrings, one per expected line
	}{
		{"deleted rule", func(f *Memory) {
			_ = f.Delete(TableMangle, ChainCTL, Desired(cfg)[7].Spec...)
		}, cfg, []string{"missing rule: -t mangle -A PPTPGW-CTL -p tcp -m tcp --dport 1723"}},
		{"changed queue", nil, Config{Queue: 5}, []string{
			"missing rule: -t raw -A PPTPGW-GRE-IN " + greQ + " -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 6",
			"missing rule", "missing rule", "missing rule", "missing rule", "missing rule",
			"missing rule: -t mangle -A PPTPGW-CTL-OUT -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 5",
			"missing rule", "missing rule", "missing rule",
			"extra rule: -t raw -A PPTPGW-GRE-IN " + `-p gre -m u32 --u32 "0x0>>0x16&0x3c@0x0>>0x10&0x7=0x1&&0x0>>0x16&0x3c@0x0&0xffff=0x880b"` + " -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 4",
			"extra rule", "extra rule", "extra rule", "extra rule", "extra rule",
			"extra rule: -t mangle -A PPTPGW-CTL-OUT -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 3",
			"extra rule", "extra rule", "extra rule",
		}},
		{"fail-open differs", nil, Config{Queue: 3, FailOpen: true}, []string{
			"missing rule: -t mangle -A PPTPGW-CTL -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 3 --queue-bypass",
			"missing rule",
			"missing rule: -t mangle -A PPTPGW-CTL-OUT -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 3 --queue-bypass",
			"missing rule", "missing rule: -t mangle -A PPTPGW-CTL-IN", "missing rule",
			"extra rule", "extra rule", "extra rule", "extra rule", "extra rule", "extra rule",
		}},
		{"duplicate jump", func(f *Memory) {
			_ = f.Append(TableMangle, "FORWARD", "-j", ChainCTL)
		}, cfg, []string{"extra rule: -t mangle -A FORWARD -j PPTPGW-CTL"}},
		{"jump from elsewhere", func(f *Memory) {
			_ = f.Append(TableMangle, "PREROUTING", "-p", "gre", "-j", ChainGREOut)
		}, cfg, []string{"extra rule: -t mangle -A PREROUTING -p gre -j PPTPGW-GRE-OUT"}},
		{"jumps swapped", func(f *Memory) {
			_ = f.Delete(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
			_ = f.Append(TableRaw, "PREROUTING", jumpSpec(t, cfg, ChainNoTrack)...)
		}, cfg, []string{"jump to PPTPGW-NOTRACK must come before"}},
		{"rules swapped", func(f *Memory) {
			c := f.chain(TableMangle, ChainCTL)
			c.rules[0], c.rules[1] = c.rules[1], c.rules[0]
		}, cfg, []string{"rules out of order in chain mangle PPTPGW-CTL"}},
		{"stray chain", func(f *Memory) {
			_ = f.NewChain(TableRaw, "PPTPGW-OLD")
		}, cfg, []string{"extra chain: raw PPTPGW-OLD"}},
		{"missing chain", func(f *Memory) {
			_ = f.Delete(TableMangle, "POSTROUTING", jumpSpec(t, cfg, ChainGREOut)...)
			_ = f.ClearChain(TableMangle, ChainGREOut)
			_ = f.DeleteChain(TableMangle, ChainGREOut)
		}, cfg, []string{"missing chain: -t mangle -N PPTPGW-GRE-OUT", "missing rule", "missing rule: -t mangle -A POSTROUTING -m mark ! --mark 0x10000000/0x10000000 -j PPTPGW-GRE-OUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewMemory()
			if _, err := Install(f, cfg); err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				tt.mutate(f)
			}
			got, err := Verify(f, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Verify = %d lines, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("line %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
