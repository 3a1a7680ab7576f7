package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deployRules is the committed iptables-save text of the default rules.
var deployRules = filepath.Join("..", "..", "deploy", "rules.v4")

// TestDeployRulesInSync: deploy/rules.v4 is SaveText of the default
// configuration (PPTPGW_WRITE_DEPLOY=1 rewrites it).
func TestDeployRulesInSync(t *testing.T) {
	want := SaveText(Config{})
	if os.Getenv("PPTPGW_WRITE_DEPLOY") == "1" {
		if err := os.WriteFile(deployRules, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(deployRules)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is stale: run PPTPGW_WRITE_DEPLOY=1 go test -run TestDeployRulesInSync ./nat/rules\n got:\n%s\nwant:\n%s", deployRules, got, want)
	}
}

// TestSaveTextRoundTrip: the text, read back as iptables would list it,
// is exactly the desired rules (Verify finds no difference), for several
// configurations.
func TestSaveTextRoundTrip(t *testing.T) {
	for _, cfg := range []Config{{}, {Queue: 4, Queues: 3, FailOpen: true, MarkBit: 0x400}} {
		f := NewMemory()
		table := ""
		for _, line := range strings.Split(SaveText(cfg), "\n") {
			switch {
			case line == "" || line[0] == '#' || line == "COMMIT":
			case line[0] == '*':
				table = line[1:]
			case line[0] == ':':
				if err := f.NewChain(table, strings.Fields(line[1:])[0]); err != nil {
					t.Fatal(err)
				}
			default:
				args, err := splitLine(line)
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Append(table, args[1], args[2:]...); err != nil {
					t.Fatal(err)
				}
			}
		}
		diff, err := Verify(f, cfg)
		if err != nil || len(diff) > 0 {
			t.Errorf("config %+v: %v %v", cfg, err, diff)
		}
	}
}
