package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/docgen"
)

var update = flag.Bool("update", false, "rewrite the generated documents (go generate)")

// generatedDocs are the committed files generated from the option table, by path from the
// repository root.
func generatedDocs(t *testing.T) map[string][]byte {
	t.Helper()
	p, err := docProgram()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"docs/pptpgw.8":                 docgen.Man(p),
		"deploy/completion/pptpgw.bash": docgen.Bash(p),
		"deploy/completion/_pptpgw":     docgen.Zsh(p),
		"openwrt/files/pptpgw.options":  docgen.UCIOptions(p.Options),
	}
}

// TestGeneratedDocs: the man page, the completions and OpenWrt's option list are what the
// option table generates (`go generate ./cmd/pptpgw` rewrites them).
func TestGeneratedDocs(t *testing.T) {
	for path, want := range generatedDocs(t) {
		full := filepath.Join("..", "..", path)
		if *update {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(full)
		if err != nil {
			t.Errorf("%v (go generate ./cmd/pptpgw writes it)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./cmd/pptpgw", path)
		}
	}
}

// tool returns the path of a program the test needs, or skips.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

// TestManPage: groff and mandoc render pptpgw.8 without a warning, and it names every option.
func TestManPage(t *testing.T) {
	page := filepath.Join("..", "..", "docs", "pptpgw.8")
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range config.Options() {
		if !strings.Contains(string(b), `\-\-`+strings.ReplaceAll(o.Name, "-", `\-`)) {
			t.Errorf("pptpgw.8 lacks --%s", o.Name)
		}
	}
	out, err := exec.Command(tool(t, "groff"), "-man", "-Tutf8", "-ww", "-z", page).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww: %v\n%s", err, out)
	}
	if mandoc, err := exec.LookPath("mandoc"); err == nil {
		out, err := exec.Command(mandoc, "-T", "lint", "-W", "warning", page).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("mandoc -T lint: %v\n%s", err, out)
		}
	}
}

// TestBashCompletion sources the bash completion and completes command lines as bash would.
func TestBashCompletion(t *testing.T) {
	bash := tool(t, "bash")
	script := `source ../../deploy/completion/pptpgw.bash
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _pptpgw; echo "${COMPREPLY[*]}"; }
comp pptpgw ru
comp pptpgw run --gre-p
comp pptpgw run --gre-path ''
comp pptpgw run --log-level w
comp pptpgw rules ''
comp pptpgw rules install --fail
comp pptpgw replay --
comp pptpgw run --max-calls ''
comp pptpgw calls --j
comp pptpgw run --require-auth mschap
comp pptpgw run --config deploy_te
comp pptpgw version --
`
	out, err := exec.Command(bash, "--norc", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := []string{
		"run rules",
		"--gre-path",
		"auto bpf kernel queue",
		"warn",
		"install remove show",
		"--fail-open",
		"--in --inside --json --lan-out --out --public-ip",
		"",
		"--json",
		"mschapv1 mschapv2",
		"deploy_test.go",
		"",
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("completions:\n got %q\nwant %q", got, want)
	}
}

// TestZshCompletion: zsh parses _pptpgw, and run with stand-ins for _describe and _arguments it
// offers the commands and each command's specs.
func TestZshCompletion(t *testing.T) {
	zsh := tool(t, "zsh")
	file := "../../deploy/completion/_pptpgw"
	if out, err := exec.Command(zsh, "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	script := `_describe() { print -rl -- "${commands[@]}"; }
_arguments() { print -rl -- "$@"; }
words=(pptpgw); CURRENT=2; source ` + file + `
words=(pptpgw rules --q); CURRENT=3; source ` + file
	out, err := exec.Command(zsh, "-f", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"run:the gateway daemon (NFQUEUE)",
		"version:print the version",
		"--queue=[first NFQUEUE number; control uses N..N+K-1, GRE and ICMP N+K..N+2K-1]:queue: ",
		"--fail-open[let control traffic bypass the queues while the daemon is down]",
		"--bpf-pin-dir=[bpffs directory where the bpf path's programs and maps stay across restarts]:bpf-pin-dir:_files",
		"2:action:(install remove show)",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("zsh completion lacks %q in:\n%s", want, out)
		}
	}
}

// TestChoices: every value the completions offer for an option parses, and a wrong one does not.
func TestChoices(t *testing.T) {
	for _, o := range config.Options() {
		for _, v := range config.Choices(o.Name) {
			if _, err := config.Parse(o.Commands[0], []string{"--" + o.Name, v}, nil); err != nil {
				t.Errorf("--%s %s: %v", o.Name, v, err)
			}
		}
		if len(config.Choices(o.Name)) > 0 {
			if _, err := config.Parse(o.Commands[0], []string{"--" + o.Name, "bogus"}, nil); err == nil {
				t.Errorf("--%s bogus parsed", o.Name)
			}
		}
	}
}
