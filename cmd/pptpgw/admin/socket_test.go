package admin

import (
	"context"
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

func TestSocketFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "pptpgw")
	path := filepath.Join(dir, "admin.sock")
	grp, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("own group has no name: %v", err)
	}

	// A stale socket, as a killed daemon leaves it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	s := NewServer(&fakeBackend{}, zaptest.NewLogger(t), nil)
	if err := s.Serve(path, grp.Name); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	if _, _, err := NewClient(path).Stats(context.Background()); err != nil {
		t.Errorf("new socket does not answer: %v", err)
	}

	// A live socket is not taken over.
	s2 := NewServer(&fakeBackend{}, zaptest.NewLogger(t), nil)
	if err := s2.Serve(path, ""); err == nil || !strings.Contains(err.Error(), "in use by a running process") {
		t.Errorf("second daemon on a live socket: %v", err)
	}

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Shutdown: %v", err)
	}
	if err := s.Serve(path, ""); err == nil {
		t.Error("Serve after Shutdown succeeded")
	}
}

func TestSocketErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	newDir := filepath.Join(dir, "new", "run")
	tests := []struct {
		name, path, group, want string
	}{
		{name: "not a socket", path: regular, want: "admin socket " + regular + ": exists and is not a socket"},
		{name: "unknown group", path: filepath.Join(newDir, "a.sock"), group: "no-such-group-pptpgw", want: `group "no-such-group-pptpgw" does not exist`},
		{name: "directory is a file", path: filepath.Join(regular, "a.sock"), want: "admin socket " + filepath.Join(regular, "a.sock") + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(&fakeBackend{}, zaptest.NewLogger(t), nil)
			err := s.Serve(tt.path, tt.group)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
			if err == nil {
				s.Shutdown(context.Background())
			}
		})
	}
	if _, err := os.Stat(newDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown group still created the directory: %v", err)
	}
}

func TestDirectoryMode(t *testing.T) {
	_, path := startServer(t, &fakeBackend{}, nil, nil) // in a directory Serve creates
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v, want 0750", fi.Mode().Perm())
	}
}
