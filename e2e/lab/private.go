//go:build linux

package lab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"sync"
)

// privateScript runs as the child of `unshare -m -p -f --kill-child
// --propagation private`: pid 1 of a new pid namespace, in a mount namespace
// whose changes never reach the host. It gives the command its own /run (so
// /var/run, a symlink to it on Debian; bound too where it is a directory)
// and its own small /dev: the host has no /dev/log, and creating one there
// would touch the host, so /dev/log here is a symlink to the lab's socket.
// The devpts instance is new too (pptpd opens ptys for its pppd).
const privateScript = `set -e
D="$1"; shift
mount --bind "$D/run" /run
if [ -d /var/run ] && [ ! -L /var/run ]; then mount --bind "$D/run" /var/run; fi
mount -t tmpfs -o mode=0755,size=1m lab-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 lab-devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
ln -s "$D/log.sock" /dev/log
exec "$@"
`

// privateArgs prepares p's private directory and syslog listener and returns
// the command line that runs args inside the private namespaces.
func (l *Lab) privateArgs(p *Proc, args []string) ([]string, error) {
	dir := l.Path(p.Name)
	if err := os.MkdirAll(dir+"/run", 0o755); err != nil {
		return nil, fmt.Errorf("private dir: %w", err)
	}
	script, err := l.privateScriptPath()
	if err != nil {
		return nil, err
	}
	p.Syslog = l.Path(p.Name + ".syslog.log")
	closeLog, err := listenSyslog(dir+"/log.sock", p.Syslog)
	if err != nil {
		return nil, err
	}
	l.onCleanup(closeLog)
	return append([]string{"unshare", "-m", "-p", "-f", "--kill-child", "--propagation", "private",
		"sh", script, dir}, args...), nil
}

// privateScriptPath writes privateScript into the lab directory once and
// returns its path. Once: rewriting it for every process would truncate
// it under a shell still reading it for the previous one, which then runs
// an empty script and exits 0 without starting anything.
func (l *Lab) privateScriptPath() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	script := l.Path("private.sh")
	if l.scriptWritten {
		return script, nil
	}
	if err := os.WriteFile(script, []byte(privateScript), 0o755); err != nil {
		return "", fmt.Errorf("private script: %w", err)
	}
	l.scriptWritten = true
	return script, nil
}

// listenSyslog receives syslog datagrams on a unix socket and appends them,
// one per line, to out. glibc's syslog(3) sends "<PRI>TIMESTAMP TAG: MSG".
func listenSyslog(sock, out string) (closeFn func(), err error) {
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("syslog socket: %w", err)
	}
	f, err := os.Create(out)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("syslog file: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			f.Write(append(bytes.TrimRight(buf[:n], "\x00\n"), '\n'))
		}
	}()
	return func() {
		conn.Close()
		wg.Wait()
		f.Close()
	}, nil
}
