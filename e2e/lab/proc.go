//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a background process the lab started. Its stdout and stderr go to
// Log; Cleanup stops it.
type Proc struct {
	Name string
	Log  string // stdout+stderr
	// Syslog is where its /dev/log messages go (private processes only).
	Syslog string
	Cmd    *exec.Cmd
	done   chan struct{}
	err    error
}

// StartOptions are the less common settings of StartWith.
type StartOptions struct {
	Stdin      *os.File   // default /dev/null
	ExtraFiles []*os.File // become fds 3, 4, ... in the process
	Env        []string   // added to the test's environment
	// Private runs the command as pid 1 of its own pid namespace, in its own
	// mount namespace with a private /run (and so /var/run) and a minimal
	// private /dev whose /dev/log is captured into NAME.syslog.log. Needed for
	// pptp-linux (its call manager socket lives in /var/run/pptp, shared
	// across network namespaces otherwise) and useful for pptpd (logs).
	Private bool
}

// Start runs args in the background inside the namespace.
func (n *NS) Start(name string, args ...string) *Proc {
	n.Lab.T.Helper()
	return n.StartWith(name, StartOptions{}, args...)
}

// StartWith is Start with options.
func (n *NS) StartWith(name string, opt StartOptions, args ...string) *Proc {
	l := n.Lab
	l.T.Helper()
	l.claim(name)
	p := &Proc{Name: name, Log: l.Path(name + ".log"), done: make(chan struct{})}
	if opt.Private {
		var err error
		if args, err = l.privateArgs(p, args); err != nil {
			l.T.Fatalf("lab: %s: %v", name, err)
		}
	}
	logf, err := os.Create(p.Log)
	if err != nil {
		l.T.Fatalf("lab: %v", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := n.Command(args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if opt.Stdin != nil {
		cmd.Stdin = opt.Stdin
	}
	cmd.ExtraFiles = opt.ExtraFiles
	if len(opt.Env) > 0 {
		cmd.Env = append(os.Environ(), opt.Env...)
	}
	// Own process group, so Stop reaches every process of it at once.
	cmd.SysProcAttr.Setpgid = true
	fmt.Fprintf(logf, "# %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		l.T.Fatalf("lab: start %s: %v", name, err)
	}
	p.Cmd = cmd
	go func() {
		p.err = cmd.Wait()
		// How it ended, at the end of its log: a process killed by a
		// signal says nothing itself.
		if f, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			fmt.Fprintf(f, "# %s: %s\n", time.Now().Format("15:04:05.000000"), exitText(cmd.ProcessState, p.err))
			f.Close()
		}
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// Pid is the pid of the started command (`ip netns exec` execs into it).
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits up to timeout for the process to exit and returns its exit
// error; it returns an error saying so if it is still running.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
}

// Signal sends sig to the process group. A private process is pid 1 of its
// pid namespace and only gets signals it handles (pptpd and pptp-linux
// handle SIGTERM); unshare, its parent, blocks SIGTERM and waits for it.
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Stop sends SIGTERM to the process group, waits up to grace, then
// SIGKILLs it.
func (p *Proc) Stop(grace time.Duration) {
	stopAll([]*Proc{p}, grace)
}

// stopAll stops processes together, so the grace periods overlap: pptpd's
// pptpctrl, for one, waits 5 s for a Stop-Control-Connection-Reply that a
// dead client never sends.
//
// Only processes still running are signalled: the pid (and process group)
// of one that exited earlier may belong to someone else by now, since pids
// wrap quickly (pid_max is 32768 on these machines).
func stopAll(procs []*Proc, grace time.Duration) {
	var running []*Proc
	for _, p := range procs {
		if ok, _ := p.Exited(); !ok {
			running = append(running, p)
			p.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	for _, p := range running {
		select {
		case <-p.done:
		case <-deadline:
			// A closed-over deadline fires once; later procs see it as passed.
			deadline = closedTimeChan
			p.Signal(syscall.SIGKILL)
			<-p.done
		}
		// SIGKILL of unshare kills its child (--kill-child) and so the whole
		// pid namespace; anything else the group left behind goes too.
		p.Signal(syscall.SIGKILL)
	}
}

var closedTimeChan = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// exitText says how a process ended.
func exitText(ps *os.ProcessState, err error) string {
	if ps == nil {
		return fmt.Sprintf("wait: %v", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit %d", ps.ExitCode())
}
