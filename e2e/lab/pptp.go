//go:build linux

package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/e2e/ppp"
)

// PPTPDConfig configures StartPPTPD. Zero values are sensible defaults.
type PPTPDConfig struct {
	Name         string        // process name, default "pptpd"
	Listen       string        // address to listen on (pptpd -l), default all
	LocalIP      string        // pptpd "localip" (handed to pppd, unused by pppeer), default 10.99.0.1
	RemoteIP     string        // pptpd "remoteip" pool, default 10.99.0.100-199
	EchoInterval time.Duration // the server-side pppeers' LCP echo interval, default 1s
	AuthPAP      bool          // server-side pppeers ask for PAP
	Debug        bool          // pptpd -d: a syslog line per GRE packet
	PeerArgs     []string      // more pppeer flags
}

// PPTPD is a running pptpd whose calls are served by pppeers.
type PPTPD struct {
	*Proc
	NS *NS
	// StatusDir holds one server-PID.json per call (PID of that pppeer in
	// pptpd's pid namespace).
	StatusDir string
}

// StartPPTPD runs `pptpd -f -c CONF -e WRAPPER` in the namespace, private
// (own /run, /dev/log captured), and waits until it listens on TCP 1723.
//
// The server-side status path: pptpd starts its "pppd" with fixed pppd
// arguments ("local file OPTIONS 115200 LOCAL:REMOTE ipparam IP remotenumber
// IP"), so -e names a generated wrapper script that execs pppeer with
// --status STATUSDIR/server-$$.json before those arguments, which pppeer
// ignores. ($$ is unique within pptpd's own pid namespace.) pptpd does pass
// its environment through to the program as well, so PPPEER_* variables
// would work too; the wrapper keeps each pptpd's settings in one file.
func (n *NS) StartPPTPD(cfg PPTPDConfig) *PPTPD {
	l := n.Lab
	l.T.Helper()
	if cfg.Name == "" {
		cfg.Name = "pptpd"
	}
	if cfg.LocalIP == "" {
		cfg.LocalIP = "10.99.0.1"
	}
	if cfg.RemoteIP == "" {
		cfg.RemoteIP = "10.99.0.100-199"
	}
	if cfg.EchoInterval == 0 {
		cfg.EchoInterval = time.Second
	}
	pppeer := Build(l.T, PkgPppeer)
	dir := l.Path(cfg.Name)
	d := &PPTPD{NS: n, StatusDir: filepath.Join(dir, "status")}
	if err := os.MkdirAll(d.StatusDir, 0o755); err != nil {
		l.T.Fatalf("lab: %v", err)
	}
	options := filepath.Join(dir, "ppp-options")
	conf := filepath.Join(dir, "pptpd.conf")
	wrapper := filepath.Join(dir, "pppeer.sh")
	peerArgs := []string{"--status", d.StatusDir + "/server-$$.json",
		"--echo-interval", cfg.EchoInterval.String(), "--verbose"}
	if cfg.AuthPAP {
		peerArgs = append(peerArgs, "--auth", "pap")
	}
	peerArgs = append(peerArgs, cfg.PeerArgs...)
	files := map[string]string{
		// pptpd only hands this path to pppd ("file X"); pppeer ignores it.
		options: "# pppd options: unused, pppeer stands in for pppd\n",
		conf:    fmt.Sprintf("option %s\nlocalip %s\nremoteip %s\n", options, cfg.LocalIP, cfg.RemoteIP),
		wrapper: fmt.Sprintf("#!/bin/sh\n# pptpd's \"pppd\": pppeer, with the status path pptpd cannot pass.\nexec %s %s \"$@\"\n",
			pppeer, strings.Join(peerArgs, " ")),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
			l.T.Fatalf("lab: %v", err)
		}
	}
	args := []string{"pptpd", "-f", "-c", conf, "-e", wrapper, "-p", "/run/pptpd.pid"}
	if cfg.Debug {
		args = append(args, "-d")
	}
	if cfg.Listen != "" {
		args = append(args, "-l", cfg.Listen)
	}
	d.Proc = n.StartWith(cfg.Name, StartOptions{Private: true}, args...)
	l.MustWaitFor(cfg.Name+" listening on 1723", func() error {
		if done, err := d.Exited(); done {
			return fmt.Errorf("pptpd exited: %v (see %s)", err, d.Log)
		}
		out, err := n.Run("ss", "-Hltn", "sport", "=", ":1723")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "LISTEN") {
			return fmt.Errorf("not listening yet")
		}
		return nil
	}, 5*time.Second)
	return d
}

// Statuses reads the status of every pppeer pptpd has started, in start
// order.
func (d *PPTPD) Statuses() ([]ppp.Status, error) {
	files, err := filepath.Glob(filepath.Join(d.StatusDir, "server-*.json"))
	if err != nil {
		return nil, fmt.Errorf("list status files: %w", err)
	}
	var out []ppp.Status
	for _, f := range files {
		s, err := ppp.ReadStatus(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// PeerOf returns the server-side status of the call whose client-side
// pppeer has Magic-Number clientMagic: LCP tells each end the other's magic.
func (d *PPTPD) PeerOf(clientMagic uint32) (ppp.Status, error) {
	all, err := d.Statuses()
	if err != nil {
		return ppp.Status{}, err
	}
	for _, s := range all {
		if s.PeerMagic == clientMagic && clientMagic != 0 {
			return s, nil
		}
	}
	return ppp.Status{}, fmt.Errorf("no server-side peer saw magic %08x (%d status files)", clientMagic, len(all))
}

// PPTPClientConfig configures StartPPTPClient.
type PPTPClientConfig struct {
	Name         string        // process name, default "pptpN"
	Server       string        // required
	LocalBind    string        // pptp --localbind
	EchoInterval time.Duration // the client pppeer's LCP echo interval, default 1s
	AuthPAP      bool          // the client pppeer asks for PAP
	LogLevel     int           // pptp --loglevel: 0 low, 1 default, 2 per packet
	Args         []string      // more pptp options
	PeerArgs     []string      // more pppeer flags
}

// PPTPClient is pptp-linux with a pppeer on the other end of its fd 0.
type PPTPClient struct {
	PPTP       *Proc
	Peer       *Proc
	StatusPath string // the client pppeer's status
}

// StartPPTPClient runs `pptp SERVER --nolaunchpppd` privately (its call
// manager socket lives in /var/run/pptp: two clients sharing /run would
// share one control connection) with one end of a socketpair as fd 0 (pptp
// reads and writes fd 0) and a pppeer on the other end.
func (n *NS) StartPPTPClient(cfg PPTPClientConfig) *PPTPClient {
	l := n.Lab
	l.T.Helper()
	if cfg.Name == "" {
		cfg.Name = l.nextName("pptp")
	}
	if cfg.EchoInterval == 0 {
		cfg.EchoInterval = time.Second
	}
	if cfg.LogLevel == 0 {
		cfg.LogLevel = 1
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.T.Fatalf("lab: socketpair: %v", err)
	}
	pptpEnd, peerEnd := os.NewFile(uintptr(fds[0]), "pptp-end"), os.NewFile(uintptr(fds[1]), "pppeer-end")
	defer pptpEnd.Close() // the children hold their own copies
	defer peerEnd.Close()

	c := &PPTPClient{StatusPath: l.Path(cfg.Name + "-pppeer.json")}
	peerArgs := []string{Build(l.T, PkgPppeer), "--fd", "3", "--status", c.StatusPath,
		"--echo-interval", cfg.EchoInterval.String(), "--verbose"}
	if cfg.AuthPAP {
		peerArgs = append(peerArgs, "--auth", "pap")
	}
	c.Peer = n.StartWith(cfg.Name+"-pppeer", StartOptions{ExtraFiles: []*os.File{peerEnd}},
		append(peerArgs, cfg.PeerArgs...)...)

	args := []string{"pptp", cfg.Server, "--nolaunchpppd", "--nohostroute", "--loglevel", strconv.Itoa(cfg.LogLevel)}
	if cfg.LocalBind != "" {
		args = append(args, "--localbind", cfg.LocalBind)
	}
	c.PPTP = n.StartWith(cfg.Name, StartOptions{Stdin: pptpEnd, Private: true}, append(args, cfg.Args...)...)
	return c
}

// Status reads the client pppeer's status.
func (c *PPTPClient) Status() (ppp.Status, error) { return ppp.ReadStatus(c.StatusPath) }

// PPTPCliConfig configures StartPPTPCli.
type PPTPCliConfig struct {
	Name         string        // process name, default "pptpcliN"
	Server       string        // required
	Local        string        // local address for TCP and GRE
	CallID       uint16        // our Call ID in the first OCRQ
	Calls        int           // calls on the control connection, default 1
	EchoInterval time.Duration // LCP echo interval, default 1s
	AuthPAP      bool
	Args         []string // more pptpcli flags (e.g. --duration 5s)
}

// PPTPCli is a running pptpcli.
type PPTPCli struct {
	*Proc
	StatusPath string
}

// StartPPTPCli runs the lab's own PPTP client in the namespace.
func (n *NS) StartPPTPCli(cfg PPTPCliConfig) *PPTPCli {
	l := n.Lab
	l.T.Helper()
	if cfg.Name == "" {
		cfg.Name = l.nextName("pptpcli")
	}
	if cfg.Calls == 0 {
		cfg.Calls = 1
	}
	if cfg.EchoInterval == 0 {
		cfg.EchoInterval = time.Second
	}
	c := &PPTPCli{StatusPath: l.Path(cfg.Name + ".json")}
	args := []string{Build(l.T, PkgPptpcli), "--server", cfg.Server,
		"--call-id", strconv.Itoa(int(cfg.CallID)), "--calls", strconv.Itoa(cfg.Calls),
		"--echo-interval", cfg.EchoInterval.String(), "--status", c.StatusPath, "--verbose"}
	if cfg.Local != "" {
		args = append(args, "--local", cfg.Local)
	}
	if cfg.AuthPAP {
		args = append(args, "--auth", "pap")
	}
	c.Proc = n.Start(cfg.Name, append(args, cfg.Args...)...)
	return c
}

// Status reads pptpcli's status.
func (c *PPTPCli) Status() (ppp.Status, error) { return ppp.ReadStatus(c.StatusPath) }

// ReadStatus reads any pppeer or pptpcli status file.
func ReadStatus(path string) (ppp.Status, error) { return ppp.ReadStatus(path) }

// CheckEcho returns nil when s shows LCP opened and at least minReplies
// Echo-Replies received, the lab's proof that PPP crossed in both
// directions; otherwise an error quoting the counters.
func CheckEcho(s ppp.Status, minReplies uint64) error {
	if !s.LCPOpened || s.EchoRepRecv < minReplies {
		return fmt.Errorf("lcp_opened=%v echo_rep_recv=%d (want >= %d) frames_in=%d frames_out=%d",
			s.LCPOpened, s.EchoRepRecv, minReplies, s.FramesIn, s.FramesOut)
	}
	return nil
}

// HostPID returns the pid, as the test sees it, of the process pptpd's pid
// namespace knows as nsPID (the PID a server-side status reports).
func (d *PPTPD) HostPID(nsPID int) (int, error) {
	for _, pid := range d.NS.Pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "NSpid:" {
				continue
			}
			// Only processes of a nested pid namespace (pptpd's).
			if f[len(f)-1] == strconv.Itoa(nsPID) {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process with pid %d in %s's pid namespace", nsPID, d.Name)
}

// ShutdownCall makes pptpd end the call whose client-side pppeer has
// Magic-Number clientMagic the way an administrator would: SIGTERM to the
// pptpctrl serving it (the parent of its pppeer), which sends
// Call-Disconnect-Notify, then Stop-Control-Connection-Request. (pptpd
// 1.4.0 sends no CDN when the client clears the call: it builds one in
// answer to Call-Clear-Request, then closes the connection unsent.)
func (d *PPTPD) ShutdownCall(clientMagic uint32) error {
	s, err := d.PeerOf(clientMagic)
	if err != nil {
		return err
	}
	pid, err := d.HostPID(s.PID)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return fmt.Errorf("pppeer of the call: %w", err)
	}
	// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 2 {
		return fmt.Errorf("pppeer of the call: bad /proc/%d/stat", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return fmt.Errorf("pppeer of the call: bad /proc/%d/stat: %w", pid, err)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid)); !strings.HasPrefix(string(cmd), "pptpd [") {
		return fmt.Errorf("parent %d of pppeer %d is %q, not pptpctrl", ppid, pid, strings.TrimRight(string(cmd), "\x00"))
	}
	return unix.Kill(ppid, unix.SIGTERM)
}
