package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const (
	socketMode = 0o660 // owner and admin group read and write; connecting needs write
	dirMode    = 0o750
	// staleProbeTimeout bounds the dial that tells a live socket from a stale one.
	staleProbeTimeout = time.Second
)

// listenUnix prepares path and listens on it (see Server.Serve for the contract).
func listenUnix(path, group string) (net.Listener, error) {
	fail := func(err error) (net.Listener, error) { return nil, fmt.Errorf("admin socket %s: %w", path, err) }
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			var unknown user.UnknownGroupError
			if errors.As(err, &unknown) {
				return fail(fmt.Errorf("group %q does not exist", group))
			}
			return fail(fmt.Errorf("group %q: %w", group, err))
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fail(fmt.Errorf("group %q has gid %q", group, g.Gid))
		}
	}
	if err := makeDir(filepath.Dir(path), gid); err != nil {
		return fail(err)
	}
	if err := removeStale(path); err != nil {
		return fail(err)
	}
	// The socket is created with the process umask and only then narrowed; until the chmod it is
	// at most as open as the umask allows, and the 0750 directory keeps others out meanwhile.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fail(err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return fail(err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	return ln, nil
}

// makeDir creates the socket's directory when it is missing, mode 0750 and, when gid >= 0, owned
// by that group so its members can reach the socket. An existing directory is left as it is:
// it may be /run itself, or one systemd's RuntimeDirectory= made the way the operator wants.
func makeDir(dir string, gid int) error {
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err // nil when it exists
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	if err := os.Chmod(dir, dirMode); err != nil { // MkdirAll is subject to the umask
		return err
	}
	if gid >= 0 {
		return os.Chown(dir, -1, gid)
	}
	return nil
}

// removeStale removes a socket file nobody listens on (a daemon that was killed leaves one), so
// a restart does not fail with "address already in use". A socket someone answers on means
// another daemon is running: taking it over would leave that daemon unreachable. Anything that
// is not a socket is not ours to delete.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("exists and is not a socket (%s)", fi.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		conn.Close()
		return errors.New("in use by a running process (is pptpgw already running?)")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// A timeout may be a live daemon too busy to accept: not proof that it is stale.
		return fmt.Errorf("probing the existing socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}
