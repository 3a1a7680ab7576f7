package docgen

import (
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

func TestEscaping(t *testing.T) {
	for _, tc := range []struct {
		f        func(string) string
		in, want string
	}{
		{roffText, `a\b`, `a\eb`},
		{roffText, ".TH x", `\&.TH x`},
		{roffText, "'quote", `\&'quote`},
		{roffText, "plain - text", "plain - text"},
		{roffFlag, "max-calls", `\-\-max\-calls`},
		{zshQuote, "it's [x]: y", `it'\''s \[x\]\: y`},
	} {
		if got := tc.f(tc.in); got != tc.want {
			t.Errorf("%q -> %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUCIOptions(t *testing.T) {
	opts := []config.OptionDoc{
		{Name: "max-calls", Arg: "N", File: true, Reloadable: true, Commands: []string{config.CmdRun}},
		{Name: "public-ip", Arg: "IP", File: true, List: true, Commands: []string{config.CmdRun}},
		{Name: "fail-open", File: true, Commands: []string{config.CmdRun, config.CmdRules}},
		{Name: "config", Arg: "FILE", Flag: true, Commands: []string{config.CmdRun}}, // not in the file
		{Name: "json", Flag: true, File: true, Commands: []string{config.CmdCalls}},  // neither run nor rules
	}
	got := string(UCIOptions(opts))
	want := "max_calls max-calls value reload\npublic_ip public-ip list restart\nfail_open fail-open bool restart\n"
	if !strings.HasSuffix(got, "# UCI NAME KIND RELOAD\n"+want) {
		t.Errorf("got\n%s", got)
	}
}

func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		o    config.OptionDoc
		want argKind
	}{
		{config.OptionDoc{Name: "force"}, argNone},
		{config.OptionDoc{Name: "gre-path", Arg: "auto|bpf"}, argWords},
		{config.OptionDoc{Name: "log-level", Arg: "L"}, argWords},
		{config.OptionDoc{Name: "state-file", Arg: "PATH"}, argFile},
		{config.OptionDoc{Name: "bpf-interfaces", Arg: "IFACE"}, argIface},
		{config.OptionDoc{Name: "admin-group", Arg: "NAME"}, argGroup},
		{config.OptionDoc{Name: "max-calls", Arg: "N"}, argOther},
	} {
		if got := kindOf(tc.o); got != tc.want {
			t.Errorf("%s: kind %d, want %d", tc.o.Name, got, tc.want)
		}
	}
}
