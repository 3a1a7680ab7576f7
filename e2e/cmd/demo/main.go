//go:build linux

// Command demo is `make demo` and `make demo-down`: a throw-away namespace
// lab (two inside clients running pptp-linux, a gateway running pptpgw with
// its rules and a MASQUERADE, an outside pptpd) built with the e2e lab
// package, left running after the command returns.
//
//	demo up   [--dir /var/tmp/pptpgw-demo] [--pptpgw bin/pptpgw] [--prefix pgdemo]
//	demo down [--dir /var/tmp/pptpgw-demo] [--prefix pgdemo]
//
// up removes a previous demo first, waits until both calls carry LCP
// echoes, prints `pptpgw calls` and `pptpgw stats`, and says how to look
// around. down removes every namespace, process and file of the demo.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

const (
	serverIP  = lab.ServerIP
	metrics   = "127.0.0.1:9723"
	waitCalls = 30 * time.Second
)

var clientIP = lab.ClientIP

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: demo up|down [--dir DIR] [--pptpgw BIN] [--prefix NAME]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("demo "+os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "/var/tmp/pptpgw-demo", "state directory: logs, sockets, what demo down removes")
	bin := fs.String("pptpgw", "bin/pptpgw", "the pptpgw binary")
	prefix := fs.String("prefix", "pgdemo", "namespace name prefix (tests use their own)")
	fs.Parse(os.Args[2:])
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (sudo make demo)")
		os.Exit(1)
	}
	if os.Args[1] == "down" {
		if err := lab.Teardown(*dir, *prefix, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "demo down: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("demo removed")
		return
	}
	abs, err := filepath.Abs(*bin)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: pptpgw binary: %v (run make build)\n", err)
		os.Exit(1)
	}
	lab.UseBinary(lab.PkgPptpgw, abs)
	if err := up(*dir, *prefix, abs, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func up(dir, prefix, bin string, out io.Writer) (err error) {
	// What the lab logs goes to DIR/setup.log, once NewKept has made DIR.
	log := &laterFile{}
	l, err := lab.NewKept(dir, prefix, log)
	if err != nil {
		return err
	}
	if err := log.open(filepath.Join(dir, "setup.log")); err != nil {
		return err
	}
	defer log.Close()
	defer func() {
		if err == nil {
			return
		}
		// Keep the logs for a look; demo down removes them.
		os.Setenv("PPTPGW_E2E_KEEP", "1")
		l.Cleanup()
		err = fmt.Errorf("%w\nthe logs are in %s (make demo-down removes them)", err, dir)
	}()
	defer lab.Recover(&err)

	fmt.Fprintln(out, "building the lab: 2 clients, gateway (pptpgw), pptpd ...")
	b := l.Basic(2)
	gw, srv, clients := b.GW, b.Srv, b.Clients
	gw.DefaultRoute(serverIP)
	gw.MustPptpgw("rules", "install")
	g := gw.StartGateway(lab.GatewayConfig{LogLevel: "info", Args: []string{"--metrics-listen", metrics}})
	d := srv.StartPPTPD(lab.PPTPDConfig{})
	var ends []*lab.PPTPClient
	for i, c := range clients {
		ends = append(ends, c.StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(i)}))
	}
	if err := l.SaveState(); err != nil {
		return err
	}

	fmt.Fprintln(out, "waiting until both calls carry LCP echoes ...")
	if err := waitEchoes(d, g, ends); err != nil {
		return err
	}

	sock := g.AdminSocket
	gwExec := "ip netns exec " + gw.Name + " "
	for _, cmd := range [][]string{{"calls"}, {"stats"}} {
		o, e, code := gw.Pptpgw(append(cmd, "--admin-socket", sock)...)
		if code != 0 {
			return fmt.Errorf("pptpgw %s: exit %d: %s", cmd[0], code, e)
		}
		fmt.Fprintf(out, "\n$ sudo %s%s %s --admin-socket %s\n%s", gwExec, bin, cmd[0], sock, o)
	}
	fmt.Fprintf(out, `
The demo keeps running (LCP echoes every second) until 'sudo make demo-down'.
Namespaces: %s (clients %s, %s; the PPTP server %s).
Look around:
  sudo %s%s calls --admin-socket %s
  sudo %s%s stats --admin-socket %s
  sudo %s%s check
  sudo %siptables -t raw -S; sudo %sconntrack -L
  sudo %scurl -s http://%s/metrics | grep '^pptpgw_'
  sudo %stcpdump -ni wan 'tcp port 1723 or ip proto 47'
Logs: %s (pptpgw.log: the daemon; setup.log: the lab's; pptp*.log, pptpd*: the peers; *-pppeer.json: PPP status)
`, strings.Join([]string{gw.Name, srv.Name, clients[0].Name, clients[1].Name}, ", "),
		clientIP(0), clientIP(1), serverIP,
		gwExec, bin, sock, gwExec, bin, sock, gwExec, bin, gwExec, gwExec, gwExec, metrics, gwExec, dir)
	return nil
}

// laterFile buffers writes until open, then appends them to a file.
type laterFile struct {
	mu  sync.Mutex
	buf bytes.Buffer
	f   *os.File
}

func (w *laterFile) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.buf.Write(p)
	}
	return w.f.Write(p)
}

func (w *laterFile) open(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.f = f
	_, err = f.Write(w.buf.Bytes())
	return err
}

func (w *laterFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

// waitEchoes waits until every client's call carries LCP echoes both ways
// and pptpgw lists them all.
func waitEchoes(d *lab.PPTPD, g *lab.Gateway, ends []*lab.PPTPClient) error {
	err := lab.WaitFor(func() error {
		for i, c := range ends {
			cs, err := c.Status()
			if err != nil {
				return fmt.Errorf("client %d: %w", i+1, err)
			}
			ss, err := d.PeerOf(cs.Magic)
			if err != nil {
				return fmt.Errorf("client %d: %w", i+1, err)
			}
			if err := errors.Join(lab.CheckEcho(cs, 2), lab.CheckEcho(ss, 2)); err != nil {
				return fmt.Errorf("client %d: %w", i+1, err)
			}
		}
		calls, err := g.Calls()
		if err != nil {
			return err
		}
		if len(calls) != len(ends) {
			return fmt.Errorf("pptpgw lists %d calls", len(calls))
		}
		return nil
	}, waitCalls)
	if err != nil {
		return fmt.Errorf("the calls did not come up: %w", err)
	}
	return nil
}
