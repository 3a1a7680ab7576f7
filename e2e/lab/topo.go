//go:build linux

package lab

import "fmt"

// The addresses of the basic topology (Lab.Basic).
const (
	LANGateway = "192.168.1.1"  // the gateway's inside address
	PublicIP   = "198.51.100.1" // the gateway's outside address
	ServerIP   = "198.51.100.2" // the PPTP server
)

// ClientIP is the address of client i (from 0) of the basic topology.
func ClientIP(i int) string { return fmt.Sprintf("192.168.1.%d", 10+i) }

// Basic is the lab's basic shape: clients on a bridge behind a gateway that
// masquerades them to one PPTP server. What runs on the gateway (the
// kernel's helper, pptpgw) is the caller's.
//
//	c1 192.168.1.10 ─┐
//	c2 192.168.1.11 ─┼─ lan 192.168.1.1 [gw] wan 198.51.100.1 ── 198.51.100.2 [srv]
//	c3 192.168.1.12 ─┘
type Basic struct {
	GW, Srv *NS
	Clients []*NS
}

// Basic builds the basic topology with nClients clients in l: namespaces
// gw, srv, c1..cN, forwarding on, MASQUERADE out of wan.
func (l *Lab) Basic(nClients int) *Basic {
	b := &Basic{GW: l.AddNS("gw"), Srv: l.AddNS("srv")}
	b.GW.AddBridge("lan", LANGateway+"/24")
	for i := range nClients {
		c := l.AddNS(fmt.Sprintf("c%d", i+1))
		l.LinkToBridge(c, "eth0", ClientIP(i)+"/24", b.GW, "lan", fmt.Sprintf("lan%d", i+1))
		c.DefaultRoute(LANGateway)
		b.Clients = append(b.Clients, c)
	}
	l.Link(b.GW, "wan", PublicIP+"/24", b.Srv, "eth0", ServerIP+"/24")
	b.GW.EnableForwarding()
	b.GW.MustRun("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	return b
}
