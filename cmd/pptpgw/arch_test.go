package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/pptpgw/pptpgw"

// importLayers says which of our packages each may import (docs/architecture.md
// "Who imports whom"): a package matches the longest prefix listed, and
// may import our packages under the prefixes given. Lower layers never
// import upper ones; nothing imports e2e or cmd.
var importLayers = []struct {
	pkg   string
	allow []string
}{
	{"alg", []string{"alg"}},
	{"conntrack", []string{"alg", "conntrack"}},
	{"nat", []string{"alg", "conntrack"}}, // the engine; its sub-packages below are the glue
	{"nat/ctnl", nil},
	{"nat/nfq", []string{"nat/nfq"}},
	{"nat/rules", []string{"nat/rules"}},
	{"nat/statefile", nil},
	{"nat/silence", nil},
	{"nat/internal", []string{"nat/internal"}},
	{"nat/fastpath", []string{"conntrack", "nat/fastpath"}},
	{"nat/events", []string{"conntrack", "nat/events"}},
	{"nat/nft", []string{"alg", "conntrack", "nat/fastpath", "nat/internal"}},
	{"nat/bpf", []string{"alg", "conntrack", "nat/fastpath", "nat/internal"}},
	{"nat/ha", []string{"conntrack", "nat/ha"}},
	{"nat/replay", []string{"alg", "conntrack", "=nat"}},
	{"nat/gateway", []string{"alg", "conntrack", "nat"}},
	{"cmd", []string{"alg", "conntrack", "nat", "cmd"}},
	{"e2e", []string{"alg", "conntrack", "nat", "e2e"}},
	{"docs", nil}, // docs/dashboard: renders the Grafana dashboard's picture
}

// TestLayers: every package imports only what its layer may.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-test", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "[") {
			continue // a test variant ("pkg [pkg.test]"): its imports are listed with it
		}
		pkg := strings.TrimPrefix(f[0], module+"/")
		if strings.HasSuffix(pkg, ".test") {
			continue
		}
		allow, ok := layerOf(pkg)
		if !ok {
			t.Errorf("package %s is in no layer (add it to importLayers and docs/architecture.md)", pkg)
			continue
		}
		for _, imp := range f[1:] {
			rel, ours := strings.CutPrefix(imp, module+"/")
			if ours && !under(rel, allow) {
				t.Errorf("%s imports %s: not allowed by its layer", pkg, rel)
			}
		}
	}
}

func layerOf(pkg string) (allow []string, ok bool) {
	best := -1
	for _, l := range importLayers {
		if under(pkg, []string{l.pkg}) && len(l.pkg) > best {
			best, allow, ok = len(l.pkg), l.allow, true
		}
	}
	return allow, ok
}

// under reports whether pkg is one of prefixes or below one; "=p" is p
// alone.
func under(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if exact, ok := strings.CutPrefix(p, "="); ok {
			if pkg == exact {
				return true
			}
			continue
		}
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// maxFuncLines bounds every function outside tests: a longer one is
// doing several jobs.
const maxFuncLines = 80

func TestFunctionLength(t *testing.T) {
	root := filepath.Join("..", "..")
	fs := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fs, p, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Body != nil {
				if n := fs.Position(fd.End()).Line - fs.Position(fd.Pos()).Line + 1; n > maxFuncLines {
					t.Errorf("%s: %s is %d lines (at most %d)", p, fd.Name.Name, n, maxFuncLines)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
