//go:build linux

package lab

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pptpgw/pptpgw/alg/pptptest"
)

// Module is the import path of this repository's module.
const Module = "github.com/pptpgw/pptpgw"

// Import paths of the lab's own programs.
const (
	PkgPppeer  = Module + "/e2e/cmd/pppeer"
	PkgPptpcli = Module + "/e2e/cmd/pptpcli"
)

// builds caches binaries for the whole test process: every test's lab uses
// the same pppeer, and linking it again per test would only cost time.
var builds struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

// Build compiles the main package pkg (an import path in this module) once
// per test process and returns the binary's path. Call RunMain from TestMain
// to remove the binaries at the end.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if p, ok := builds.paths[pkg]; ok {
		return p
	}
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "pptpgw-e2e-bin-")
		if err != nil {
			t.Fatalf("lab: build dir: %v", err)
		}
		builds.dir, builds.paths = d, map[string]string{}
	}
	root, err := pptptest.ModuleRoot()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	out := filepath.Join(builds.dir, path.Base(pkg))
	cmd := exec.Command(goTool(), "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lab: go build %s: %v\n%s", pkg, err, b)
	}
	builds.paths[pkg] = out
	return out
}

// RunMain runs the tests and then removes the binaries Build made:
//
//	func TestMain(m *testing.M) { os.Exit(lab.RunMain(m)) }
func RunMain(m *testing.M) int {
	code := m.Run()
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.paths = "", nil
	}
	return code
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go" // let exec report it missing

}
