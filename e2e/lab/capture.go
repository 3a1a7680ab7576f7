//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Capture is a tcpdump writing a pcap file in a namespace.
type Capture struct {
	*Proc
	Path string
}

// Capture starts tcpdump on iface in the namespace, writing NAME.pcap in the
// lab directory, and returns once it is listening. filter is a pcap filter
// ("" for everything). -Z root: Debian's tcpdump would otherwise drop to the
// tcpdump user and fail to write into the lab's root-only directory.
// --immediate-mode: without it packets wait in the kernel's ring for a
// buffer timeout, and those still there when Stop ends tcpdump are lost.
func (n *NS) Capture(name, iface, filter string) *Capture {
	l := n.Lab
	l.T.Helper()
	c := &Capture{Path: l.Path(name + ".pcap")}
	args := []string{"tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", c.Path}
	if filter != "" {
		args = append(args, strings.Fields(filter)...)
	}
	c.Proc = n.Start(name, args...)
	l.MustWaitFor(name+" listening", func() error {
		if done, err := c.Exited(); done {
			return fmt.Errorf("tcpdump exited: %v", err)
		}
		b, _ := os.ReadFile(c.Log)
		if !strings.Contains(string(b), "listening on") {
			return fmt.Errorf("not listening yet")
		}
		return nil
	}, 5*time.Second)
	return c
}

// Stop ends the capture (tcpdump flushes on SIGTERM) and returns the file.
func (c *Capture) Stop() string {
	c.Signal(syscall.SIGTERM)
	c.Wait(3 * time.Second)
	if done, _ := c.Exited(); !done {
		c.Proc.Stop(0)
	}
	return c.Path
}

// CountPackets returns how many packets of the pcap file match filter (a
// pcap filter; "" for all), read with tcpdump.
func CountPackets(path, filter string) (int, error) {
	args := []string{"-r", path, "-n"}
	if filter != "" {
		args = append(args, strings.Fields(filter)...)
	}
	out, err := exec.Command("tcpdump", args...).Output()
	if err != nil {
		return 0, fmt.Errorf("tcpdump -r %s: %w", path, err)
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return 0, nil
	}
	return len(strings.Split(s, "\n")), nil
}
