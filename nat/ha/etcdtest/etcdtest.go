// Package etcdtest runs a real one-member etcd (Debian's etcd-server) for
// tests: on 127.0.0.1 random ports, with a temporary data directory, and
// stopped and started again at will (a node keeps working while etcd is
// gone). Tests skip, saying why, when the binary is missing, unless
// PPTPGW_REQUIRE_ETCD is set (.ci/run installs etcd and sets it, so CI
// never skips).
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Binary is the etcd server binary looked for in PATH.
const Binary = "etcd"

// Etcd is one etcd member.
type Etcd struct {
	URL  string // client URL
	Dir  string // data directory
	peer string
	bin  string
	tb   testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	Log  *os.File // its output
}

// Start runs an etcd for tb and stops it at cleanup; it skips tb when
// the binary is missing.
func Start(tb testing.TB) *Etcd {
	tb.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil && os.Getenv("PPTPGW_REQUIRE_ETCD") != "" {
		tb.Fatalf("etcd server binary not installed (apt-get install -y etcd-server), and PPTPGW_REQUIRE_ETCD is set: %v", err)
	}
	if err != nil {
		tb.Skipf("etcd server binary not installed (apt-get install -y etcd-server): %v", err)
	}
	dir := tb.TempDir()
	e := &Etcd{bin: bin, tb: tb, Dir: filepath.Join(dir, "data"),
		URL: "http://" + freeAddr(tb), peer: "http://" + freeAddr(tb)}
	if e.Log, err = os.Create(filepath.Join(dir, "etcd.log")); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		e.Stop()
		e.Log.Close()
	})
	if err := e.Start(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// Args are the etcd command line of a one-member cluster at the given
// URLs (the e2e lab runs the same in a namespace).
func Args(name, dir, clientURL, peerURL string) []string {
	return []string{"--name", name, "--data-dir", dir,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", name + "=" + peerURL, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn"}
}

// Start starts the member again after Stop (same data) and waits until
// it answers.
func (e *Etcd) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return nil
	}
	cmd := exec.Command(e.bin, Args("t", e.Dir, e.URL, e.peer)...)
	cmd.Stdout, cmd.Stderr = e.Log, e.Log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	e.cmd, e.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(e.done)
	return WaitHealthy(e.URL, 20*time.Second)
}

// Stop kills the member (SIGKILL: a crash, not a goodbye).
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	<-e.done
	e.cmd = nil
}

// WaitHealthy polls url's /health until etcd says it is.
func WaitHealthy(url string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd at %s not healthy after %v", url, d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
