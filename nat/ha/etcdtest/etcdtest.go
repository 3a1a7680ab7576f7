// Package etcdtest runs a real one-member etcd (Debian's etcd-server) for
// tests: on 127.0.0.1 random ports, with a temporary data directory, and
// stopped and started again at will (a node keeps working while etcd is
// gone). Tests skip, saying why, when the binary is missing, unless
// PPTPGW_TEST_REQUIRE_ETCD is set (.ci/run installs etcd and sets it, so CI
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
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary is the etcd server binary looked for in PATH.
const Binary = "etcd"

// Etcd is one etcd member.
type Etcd struct {
	URL     string // client URL
	Dir     string // data directory
	name    string
	peer    string
	cluster string // --initial-cluster
	pki     *PKI   // TLS to clients (StartTLS)
	bin     string
	tb      testing.TB
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	Log     *os.File // its output
}

// Start runs a one-member etcd for tb and stops it at cleanup; it skips
// tb when the binary is missing.
func Start(tb testing.TB) *Etcd {
	tb.Helper()
	return StartCluster(tb, 1)[0]
}

// StartCluster runs an etcd cluster of n members for tb.
func StartCluster(tb testing.TB, n int) []*Etcd {
	tb.Helper()
	bin := lookBinary(tb)
	dir := tb.TempDir()
	ms := make([]*Etcd, n)
	var cluster []string
	for i := range ms {
		name := fmt.Sprintf("m%d", i)
		ms[i] = &Etcd{bin: bin, tb: tb, name: name, Dir: filepath.Join(dir, name),
			URL: "http://" + freeAddr(tb), peer: "http://" + freeAddr(tb)}
		cluster = append(cluster, name+"="+ms[i].peer)
	}
	errs := make(chan error, n)
	for _, e := range ms {
		e.cluster = strings.Join(cluster, ",")
		var err error
		if e.Log, err = os.Create(filepath.Join(dir, e.name+".log")); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			e.Stop()
			e.Log.Close()
		})
		go func() { errs <- e.Start() }() // the members wait for each other
	}
	for range ms {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	return ms
}

// URLs are the members' client URLs.
func URLs(ms []*Etcd) []string {
	var u []string
	for _, e := range ms {
		u = append(u, e.URL)
	}
	return u
}

func lookBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil && os.Getenv("PPTPGW_TEST_REQUIRE_ETCD") != "" {
		tb.Fatalf("etcd server binary not installed (apt-get install -y etcd-server), and PPTPGW_TEST_REQUIRE_ETCD is set: %v", err)
	}
	if err != nil {
		tb.Skipf("etcd server binary not installed (apt-get install -y etcd-server): %v", err)
	}
	return bin
}

// Args are the etcd command line of a one-member cluster at the given
// URLs (the e2e lab runs the same in a namespace).
func Args(name, dir, clientURL, peerURL string) []string {
	return clusterArgs(name, dir, clientURL, peerURL, name+"="+peerURL)
}

func clusterArgs(name, dir, clientURL, peerURL, cluster string) []string {
	return []string{"--name", name, "--data-dir", dir,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", cluster, "--initial-cluster-state", "new",
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
	cmd := exec.Command(e.bin, append(clusterArgs(e.name, e.Dir, e.URL, e.peer, e.cluster), e.tlsArgs()...)...)
	cmd.Stdout, cmd.Stderr = e.Log, e.Log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	e.cmd, e.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(e.done)
	hc, err := e.healthClient()
	if err != nil {
		return err
	}
	return waitHealthy(hc, e.URL, 20*time.Second)
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
func WaitHealthy(url string, d time.Duration) error { return waitHealthy(http.DefaultClient, url, d) }

func waitHealthy(hc *http.Client, url string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if resp, err := hc.Do(req); err == nil {
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
