//go:build e2e

package bpf

import (
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
	"github.com/pptpgw/pptpgw/nat/internal/nstest"
)

// bridgeCall is the call of the bridged lab: inside host 192.168.78.10 on
// a port of the gateway's bridge.
var bridgeCall = conntrack.GREMap{Peer: addr("198.51.100.2"), OuterID: 40002, Public: addr("198.51.100.1"),
	Inside: addr("192.168.78.10"), InsideID: 8, PeerID: 556}

// TestBridgePorts: the gateway's inside is a bridge (br_netfilter on, as
// on this kernel) with two hosts on its ports. Asked for the bridge, the
// program also goes on its Ethernet ports and translates a host's GRE
// there, before the bridge (whose device never sees it), also on a port
// that has the bridge's MAC; inbound GRE goes out through the bridge. A frame on a port not addressed to the
// bridge is bridged untouched. A port added later is taken at the next
// SetInterfaces, one removed is let go, and a bridge with VLAN filtering
// keeps its ports' frames.
func TestBridgePorts(t *testing.T) {
	nstest.NeedRoot(t)
	out, gw := nstest.NewNS(t, "bpfbo"), nstest.NewNS(t, "bpfbg")
	h1, h2 := nstest.NewNS(t, "bpfb1"), nstest.NewNS(t, "bpfb2")
	nstest.Link(t, out, "bpfx0", "198.51.100.2/24", gw, "bpfgo", "198.51.100.1/24")
	// A MAC of its own, so that the ports' frames to it are for another
	// host as the ports see them (else the bridge takes its lowest port's).
	nstest.Sh(t, "ip", "-n", gw, "link", "add", "bpfbr", "address", "02:00:00:00:0b:01", "type", "bridge")
	nstest.Sh(t, "ip", "-n", gw, "addr", "add", "192.168.78.1/24", "dev", "bpfbr")
	nstest.Sh(t, "ip", "-n", gw, "link", "set", "bpfbr", "up")
	nstest.Link(t, h1, "bpfx1", "192.168.78.10/24", gw, "bpfp1", "")
	nstest.Link(t, h2, "bpfx2", "192.168.78.11/24", gw, "bpfp2", "")
	for _, p := range []string{"bpfp1", "bpfp2"} {
		nstest.Sh(t, "ip", "-n", gw, "link", "set", p, "master", "bpfbr")
	}
	nstest.Sh(t, "ip", "-n", h1, "route", "add", "default", "via", "192.168.78.1")
	nstest.Sh(t, "ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// h2 holds the peer's address too: h1's frames for it through h2 are
	// a bridged flow the program must leave alone.
	nstest.Sh(t, "ip", "-n", h2, "addr", "add", "198.51.100.2/32", "dev", "bpfx2")
	ifi := func(name string) int {
		var idx int
		nstest.InNS(t, gw, func() {
			i, err := net.InterfaceByName(name)
			if err != nil {
				t.Fatal(err)
			}
			idx = i.Index
		})
		return idx
	}
	ifOut, ifBr, ifP1, ifP2 := ifi("bpfgo"), ifi("bpfbr"), ifi("bpfp1"), ifi("bpfp2")
	ofd, h1fd, h2fd := rawGRE(t, out), rawGRE(t, h1), rawGRE(t, h2)
	poke(t, gw, "192.168.78.10")
	poke(t, gw, "198.51.100.2")

	b, err := Open(Config{PinDir: pinDir(t, "bridge"), MaxCalls: 16, NetNS: nstest.FD(t, gw)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(true) })
	if err := b.Replace([]conntrack.GREMap{bridgeCall}); err != nil {
		t.Fatal(err)
	}
	attached := func(want ...int) {
		t.Helper()
		if err := b.SetInterfaces([]int{ifOut, ifBr}); err != nil {
			t.Fatal(err)
		}
		if got := b.Interfaces(); !slices.Equal(got, sorted(want...)) {
			t.Fatalf("attached to %v, want %v", got, sorted(want...))
		}
	}
	attached(ifOut, ifBr, ifP1, ifP2)

	brRx := func() uint64 {
		var links []struct {
			Stats64 struct{ RX struct{ Packets uint64 } } `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(nstest.Sh(t, "ip", "-n", gw, "-s", "-j", "link", "show", "bpfbr")), &links); err != nil || len(links) != 1 {
			t.Fatalf("ip link show bpfbr: %v", err)
		}
		return links[0].Stats64.RX.Packets
	}
	const n = 5
	before := brRx()
	for range n {
		send(t, h1fd, "198.51.100.2", greV1(556, 60))
	}
	got := recvGRE(ofd)
	if len(got) != n || got[0].src != "198.51.100.1" || got[0].ttl != 63 || !got[0].csumOK {
		t.Fatalf("outside received %+v, want %d packets from 198.51.100.1, TTL 63", got, n)
	}
	if d := brRx() - before; d >= n {
		t.Errorf("the bridge device received %d packets: the GRE went through the bridge, not the program on its port", d)
	}
	for range n {
		send(t, ofd, "198.51.100.1", greV1(40002, 60))
	}
	if got := recvGRE(h1fd); len(got) != n || got[0].dst != "192.168.78.10" || got[0].callID != 8 {
		t.Fatalf("inside received %+v, want %d packets to 192.168.78.10 Call ID 8", got, n)
	}

	// A port with the bridge's own MAC sees the frames as its own: still
	// routed as the bridge.
	nstest.Sh(t, "ip", "-n", gw, "link", "set", "bpfp1", "address", "02:00:00:00:0b:01")
	send(t, h1fd, "198.51.100.2", greV1(556, 60))
	if got := recvGRE(ofd); len(got) != 1 || got[0].src != "198.51.100.1" {
		t.Fatalf("outside received %+v through a port with the bridge's MAC, want one from 198.51.100.1", got)
	}

	// h1 to the peer's address through h2: the frame is for h2's MAC.
	nstest.Sh(t, "ip", "-n", h1, "route", "add", "198.51.100.2/32", "via", "192.168.78.11")
	send(t, h1fd, "198.51.100.2", greV1(556, 60))
	if got := recvGRE(h2fd); len(got) != 1 || got[0].src != "192.168.78.10" || got[0].callID != 556 {
		t.Errorf("h2 received %+v, want the untranslated packet", got)
	}
	if got := recvGRE(ofd); len(got) != 0 {
		t.Errorf("outside received %+v from a frame not for the bridge", got)
	}

	nstest.Link(t, gw, "bpfp3", "", h2, "bpfx3", "")
	nstest.Sh(t, "ip", "-n", gw, "link", "set", "bpfp3", "master", "bpfbr")
	attached(ifOut, ifBr, ifP1, ifP2, ifi("bpfp3"))
	nstest.Sh(t, "ip", "-n", gw, "link", "set", "bpfp2", "nomaster")
	attached(ifOut, ifBr, ifP1, ifi("bpfp3"))
	if o, err := exec.Command("ip", "-n", gw, "link", "set", "bpfbr", "type", "bridge", "vlan_filtering", "1").CombinedOutput(); err != nil {
		t.Logf("no VLAN filtering in this kernel (%v: %s): that part is not tested", err, o)
		return
	}
	attached(ifOut, ifBr)
}
