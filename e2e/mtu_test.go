//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/alg/pptpmsg"
	"github.com/pptpgw/pptpgw/e2e/lab"
)

// TestMTUFragNeeded: path-MTU discovery through the gateway. A router on
// the outside path has a 1280-byte link towards the PPTP server:
//
//	c1 192.168.1.10 ── [gw: pptpgw] 198.51.100.1 ── .254 [rtr] 203.0.113.1 ══ 203.0.113.2 [srv]
//	                                                        (MTU 1280)
//
// With a call up, the client sends GRE of 1400 bytes with DF towards the
// server: the router answers fragmentation-needed to the gateway's public
// address, quoting the translated packet. pptpgw translates the error back
// (outer destination, quoted source, checksums); the client receives it,
// tshark finds every checksum valid, and the client's kernel caches the
// path MTU of 1280 towards the server.
func TestMTUFragNeeded(t *testing.T) {
	t.Parallel()
	const (
		client  = "192.168.1.10"
		rtrWAN  = "198.51.100.254"
		server  = "203.0.113.2"
		pathMTU = 1280
	)
	l := lab.New(t)
	c1, gw, rtr, srv := l.AddNS("c1"), l.AddNS("gw"), l.AddNS("rtr"), l.AddNS("srv")
	l.Link(c1, "eth0", client+"/24", gw, "lan", "192.168.1.1/24")
	l.Link(gw, "wan", publicIP+"/24", rtr, "eth0", rtrWAN+"/24")
	l.Link(rtr, "eth1", "203.0.113.1/24", srv, "eth0", server+"/24")
	rtr.IP("link", "set", "eth1", "mtu", fmt.Sprint(pathMTU))
	srv.IP("link", "set", "eth0", "mtu", fmt.Sprint(pathMTU))
	c1.DefaultRoute("192.168.1.1")
	gw.DefaultRoute(rtrWAN)
	srv.DefaultRoute("203.0.113.1")
	gw.EnableForwarding()
	rtr.EnableForwarding()
	gw.MustRun("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	g := gw.StartGateway(lab.GatewayConfig{InstallRules: true})
	srv.StartPPTPD(lab.PPTPDConfig{})
	c1.StartPPTPCli(lab.PPTPCliConfig{Server: server, Local: client, CallID: 1000})
	calls := waitCalls(l, g, 1, trafficBothWays, 15*time.Second)
	peerID := calls[0].PeerCallID

	capture := c1.Capture("cap-c1", "eth0", "icmp")
	atWAN := gw.Capture("cap-gw-wan", "wan", "icmp")

	// A raw GRE socket in the client, as pptp-linux has: connected to the
	// server, so the kernel hands it the ICMP error and caches the MTU.
	payload := make([]byte, 1400-12)
	for i := range payload {
		payload[i] = byte(12 + i)
	}
	big := pptpmsg.GRE(peerID, 0, payload) // 1400 bytes
	err := c1.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_GRE)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(client).To4())}); err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(server).To4())}); err != nil {
			return err
		}
		// Until the error is in, the socket's path MTU is the link's; then
		// it is the router's, and the kernel refuses the big packet.
		pmtu := func() error {
			mtu, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
			if err != nil {
				return err
			}
			if mtu != pathMTU {
				return fmt.Errorf("IP_MTU %d", mtu)
			}
			return nil
		}
		for seq := range 3 {
			binary.BigEndian.PutUint32(big[8:], uint32(1000+seq))
			if _, err := unix.Write(fd, big); err != nil {
				return fmt.Errorf("send %d: %w", seq, err)
			}
			if err = lab.WaitFor(pmtu, time.Second); err == nil {
				break
			}
		}
		if err := pmtu(); err != nil {
			return err
		}
		if _, err := unix.Write(fd, big); err != unix.EMSGSIZE {
			return fmt.Errorf("send after the error: %v, want EMSGSIZE", err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("client socket: %v", err)
	}

	// The kernel of the client cached the lower path MTU to the server.
	route := c1.MustRun("ip", "route", "get", server)
	if !regexp.MustCompile(`\bmtu ` + fmt.Sprint(pathMTU) + `\b`).MatchString(route) {
		t.Errorf("ip route get %s in the client: no mtu %d cached:\n%s", server, pathMTU, route)
	}
	st := g.MustStats()
	if st["packets_icmp_in"] == 0 {
		t.Errorf("stats packets_icmp_in = 0: %v", st)
	}

	// What crossed: the router's error to the public address at the
	// gateway's WAN, the translated one at the client, all checksums good.
	wanPcap, lanPcap := atWAN.Stop(), capture.Stop()
	fields := func(path string) []string {
		out, err := exec.Command("tshark", "-r", path, "-n", "-o", "ip.check_checksum:TRUE",
			"-Y", "icmp.type == 3 && icmp.code == 4", "-T", "fields", "-E", "separator=|",
			"-e", "ip.src", "-e", "ip.dst", "-e", "ip.checksum.status", "-e", "icmp.checksum.status", "-e", "icmp.mtu", "-e", "gre.key.call_id").Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	wan, lan := fields(wanPcap), fields(lanPcap)
	if len(wan) == 0 || wan[0] == "" {
		t.Fatalf("no fragmentation-needed at the gateway's WAN: the lab, not pptpgw, is broken")
	}
	// ip.src and ip.dst list the outer header, then the quoted one.
	wantWAN := fmt.Sprintf("%s,%s|%s,%s|1,1|1|%d|%d", rtrWAN, publicIP, publicIP, server, pathMTU, peerID)
	wantLAN := fmt.Sprintf("%s,%s|%s,%s|1,1|1|%d|%d", rtrWAN, client, client, server, pathMTU, peerID)
	if wan[0] != wantWAN {
		t.Errorf("at the gateway's WAN:\n got %s\nwant %s", wan[0], wantWAN)
	}
	if len(lan) == 0 || lan[0] != wantLAN {
		t.Errorf("at the client (checksum status 1 = good):\n got %q\nwant %s", lan, wantLAN)
	}
	t.Logf("WAN %q\nclient %q\n%s", wan, lan, route)
}
