//go:build linux

// Command pppeer is the lab's stand-in for pppd: async HDLC PPP on a byte
// stream, LCP negotiation with a Magic-Number, then LCP echoes, with its
// counters written as JSON for tests to read. The machines have no /dev/ppp,
// so the real pppd cannot run; pptpd and pptp-linux only need something that
// speaks framed PPP.
//
// Two ways to run it:
//   - as pptpd's "pppd": `pptpd -e WRAPPER` starts the program with a pty on
//     stdin/stdout and pppd arguments ("local", "file X", "115200",
//     "A:B", "ipparam IP", ...). They are ignored: only the flags below are
//     read, anywhere on the line, and every other argument is skipped. The
//     status path for this side comes from a wrapper script (the lab's
//     pptpd helper writes one) that execs `pppeer --status DIR/server-$$.json
//     "$@"`; the PPPEER_* environment variables below work too, since pptpd
//     and pptpctrl pass their environment through execvp.
//   - next to `pptp --nolaunchpppd`: given one end of a socketpair as --fd N
//     (pptp reads and writes its fd 0, so a pipe cannot work).
//
// Flags (also as environment variables, flags win):
//
//	--fd N               stream fd (default: stdin for reading, stdout for writing)
//	--status FILE        PPPEER_STATUS; "%p" is replaced by the pid
//	--echo-interval D    PPPEER_ECHO_INTERVAL, default 1s
//	--auth pap|none      PPPEER_AUTH: ask the peer for PAP in our Configure-Request
//	--duration D         exit after D (default: until SIGTERM/SIGINT/SIGHUP or EOF)
//	--verbose            PPPEER_VERBOSE=1: log negotiation to stderr
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/e2e/ppp"
)

type config struct {
	fd       int
	status   string
	echo     time.Duration
	authPAP  bool
	duration time.Duration
	verbose  bool
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("pppeer[" + strconv.Itoa(os.Getpid()) + "]: ")
	cfg, err := parseArgs(os.Args[1:], os.Getenv)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// parseArgs reads our flags from anywhere in args and skips everything else,
// because pptpd appends pppd's arguments we cannot predict.
func parseArgs(args []string, getenv func(string) string) (config, error) {
	cfg := config{fd: -1, echo: time.Second}
	vals := map[string]string{
		"status":        getenv("PPPEER_STATUS"),
		"echo-interval": getenv("PPPEER_ECHO_INTERVAL"),
		"auth":          getenv("PPPEER_AUTH"),
	}
	if v := getenv("PPPEER_VERBOSE"); v != "" && v != "0" {
		vals["verbose"] = "true"
	}
	takesValue := map[string]bool{"fd": true, "status": true, "echo-interval": true, "auth": true, "duration": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case name == "verbose":
			vals[name] = "true"
		case takesValue[name] && hasVal:
			vals[name] = val
		case takesValue[name] && i+1 < len(args):
			vals[name] = args[i+1]
			i++
		case takesValue[name]:
			return cfg, fmt.Errorf("flag --%s needs a value", name)
		}
	}
	var err error
	if v := vals["fd"]; v != "" {
		if cfg.fd, err = strconv.Atoi(v); err != nil || cfg.fd < 0 {
			return cfg, fmt.Errorf("bad --fd %q", v)
		}
	}
	cfg.status = strings.ReplaceAll(vals["status"], "%p", strconv.Itoa(os.Getpid()))
	if v := vals["echo-interval"]; v != "" {
		if cfg.echo, err = time.ParseDuration(v); err != nil {
			return cfg, fmt.Errorf("bad --echo-interval: %w", err)
		}
	}
	switch v := vals["auth"]; v {
	case "", "none":
	case "pap":
		cfg.authPAP = true
	default:
		return cfg, fmt.Errorf("bad --auth %q (pap or none)", v)
	}
	if v := vals["duration"]; v != "" {
		if cfg.duration, err = time.ParseDuration(v); err != nil {
			return cfg, fmt.Errorf("bad --duration: %w", err)
		}
	}
	cfg.verbose = vals["verbose"] == "true"
	return cfg, nil
}

func run(cfg config) error {
	r, w, err := openLink(cfg.fd)
	if err != nil {
		return err
	}
	opt := ppp.Options{EchoInterval: cfg.echo, AuthPAP: cfg.authPAP}
	if cfg.verbose {
		opt.Logf = log.Printf
	}
	var wmu sync.Mutex
	eng := ppp.NewEngine(opt, func(frame []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := w.Write(ppp.Encode(nil, frame))
		return err
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	readErr := make(chan error, 1)
	go readFrames(r, eng, cfg.verbose, readErr)
	return loop(ctx, cfg, eng, readErr)
}

// openLink returns the PPP link: the inherited descriptor fd, or
// stdin/stdout made raw.
func openLink(fd int) (io.Reader, io.Writer, error) {
	if fd >= 0 {
		f := os.NewFile(uintptr(fd), "ppp")
		if f == nil {
			return nil, nil, fmt.Errorf("fd %d is not open", fd)
		}
		return f, f, nil
	}
	// pptpd's pty only has echo turned off; the line discipline would
	// still translate CR/LF and eat control characters. pppd makes its tty
	// raw itself, so we must too.
	for _, fd := range []int{0, 1} {
		if err := makeRaw(fd); err != nil {
			return nil, nil, err
		}
	}
	return os.Stdin, os.Stdout, nil
}

// readFrames feeds the engine what arrives on r until it fails.
func readFrames(r io.Reader, eng *ppp.Engine, verbose bool, readErr chan<- error) {
	var dec ppp.Decoder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		bad := dec.BadFCS
		dec.Feed(buf[:n], func(f []byte) {
			if err := eng.Input(f); err != nil && verbose {
				log.Printf("write: %v", err)
			}
		})
		if d := dec.BadFCS - bad; d > 0 {
			eng.CountBadFCS(d)
		}
		if err != nil {
			readErr <- err
			return
		}
	}
}

// loop ticks the engine and writes the status file until ctx ends or
// the link closes.
func loop(ctx context.Context, cfg config, eng *ppp.Engine, readErr <-chan error) error {
	writeStatus := func() {
		if cfg.status == "" {
			return
		}
		st := ppp.Status{Counters: eng.Counters(), PID: os.Getpid()}
		if err := ppp.WriteStatus(cfg.status, st); err != nil {
			log.Print(err)
		}
	}
	defer writeStatus()
	writeStatus() // at once, so a test sees that the peer started

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastStatus := time.Now()
	eng.Tick(time.Now())
	for {
		select {
		case <-ctx.Done():
			if cfg.verbose {
				log.Printf("stopping: %v", context.Cause(ctx))
			}
			return nil
		case err := <-readErr:
			// EOF on a socketpair, EIO on a pty whose master pptpd closed:
			// the call is over.
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) {
				return fmt.Errorf("read: %w", err)
			}
			if cfg.verbose {
				log.Printf("link closed: %v", err)
			}
			return nil
		case now := <-tick.C:
			if err := eng.Tick(now); err != nil && cfg.verbose {
				log.Printf("write: %v", err)
			}
			if now.Sub(lastStatus) >= 200*time.Millisecond {
				lastStatus = now
				writeStatus()
			}
		}
	}
}

// makeRaw does what cfmakeraw(3) does, if fd is a terminal at all.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil // not a tty: a socketpair or a file, nothing to do
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("make fd %d raw: %w", fd, err)
	}
	return nil
}
