package admin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClient(t *testing.T) {
	b := &fakeBackend{calls: sampleCalls(), stats: map[string]uint64{"calls_active": 3}}
	_, path := startServer(t, b, nil, nil)
	c := NewClient(path)
	ctx := context.Background()

	raw, calls, err := c.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// --json prints the body exactly as served.
	_, _, body := request(t, unixHTTP(path), "GET", "http://x/v1/calls", nil)
	if string(raw) != body {
		t.Errorf("raw body\n%s\ndiffers from the served one\n%s", raw, body)
	}
	if len(calls) != 3 || calls[1].ID != "198.51.100.1/203.0.113.5/40001" || !calls[1].Created.Equal(t0) || calls[1].BytesOut != 1200 {
		t.Errorf("decoded calls %+v", calls)
	}

	raw, stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats["calls_active"] != 3 || !strings.HasPrefix(string(raw), `{"calls_active":3,"uptime_seconds":`) {
		t.Errorf("stats %v raw %s", stats, raw)
	}

	if err := c.DeleteCall(ctx, "198.51.100.1/203.0.113.5/40001"); err != nil {
		t.Errorf("delete: %v", err)
	}
	err = c.DeleteCall(ctx, "198.51.100.1/203.0.113.5/40001")
	if !errors.Is(err, ErrNotFound) || err.Error() != "call 198.51.100.1/203.0.113.5/40001: no such call" {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	err = c.DeleteCall(ctx, "198.51.100.1/x/1")
	if err == nil || err.Error() != `admin socket `+path+`: DELETE /v1/calls/198.51.100.1/x/1: 400 Bad Request: call id: "x" is not an IPv4 address` {
		t.Errorf("bad id: %v", err)
	}
	if err := c.DeleteCall(ctx, "40001"); err == nil || !strings.Contains(err.Error(), "is not PUBLIC/PEER/OUTER_CALL_ID") {
		t.Errorf("short id: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	// A listener that accepts but never answers.
	hung := filepath.Join(dir, "hung.sock")
	hl, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()

	tests := []struct {
		name, path string
		timeout    time.Duration
		want       string
		is         error
	}{
		{name: "no socket", path: missing, want: "admin socket " + missing + ": no such file or directory (is pptpgw running?)", is: syscall.ENOENT},
		{name: "stale socket", path: stale, want: "admin socket " + stale + ": connection refused (is pptpgw running?)", is: syscall.ECONNREFUSED},
		{name: "no answer", path: hung, timeout: 100 * time.Millisecond, want: "admin socket " + hung + ": no answer in time (is pptpgw stuck?)", is: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, _, err := NewClient(tt.path).Calls(ctx)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v\nwant  %s", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}

	if os.Geteuid() != 0 {
		locked := filepath.Join(dir, "locked")
		if err := os.Mkdir(locked, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(locked, 0); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(locked, 0o700)
		_, _, err := NewClient(filepath.Join(locked, "x.sock")).Stats(context.Background())
		if err == nil || !strings.Contains(err.Error(), "permission denied (run as root or as a member of the --admin-group)") {
			t.Errorf("permission: %v", err)
		}
	}
}
