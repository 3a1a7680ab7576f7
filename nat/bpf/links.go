package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"golang.org/x/sys/unix"
)

// devInfo is a device map value: the interface the FIB is asked from for
// frames arriving on the key's interface (itself, or the bridge it is a
// port of) and the MAC those frames must be addressed to when it is a
// port (the bridge's).
type devInfo struct {
	L3  uint32
	MAC [6]byte
	Pad [2]byte
}

const devInfoSize = 12

// iface is what the attachments need to know of an interface.
type iface struct {
	name   string
	ether  bool
	bridge bool // a bridge without VLAN filtering
	master int
	mac    [6]byte
}

// links is one rtnetlink dump of the interfaces of the thread's network
// namespace, by ifindex.
type links map[int]iface

func readLinks() (links, error) {
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("bpf: rtnetlink: %w", err)
	}
	defer c.Close()
	msgs, err := c.Link.List()
	if err != nil {
		return nil, fmt.Errorf("bpf: list interfaces: %w", err)
	}
	out := links{}
	for _, m := range msgs {
		a := m.Attributes
		if a == nil {
			continue
		}
		l := iface{name: a.Name, ether: m.Type == unix.ARPHRD_ETHER && len(a.Address) == 6}
		if l.ether {
			l.mac = [6]byte(a.Address)
		}
		if a.Master != nil {
			l.master = int(*a.Master)
		}
		if a.Info != nil && a.Info.Kind == "bridge" {
			br, _ := a.Info.Data.(*driver.Bridge)
			l.bridge = br == nil || br.VlanFiltering == nil || *br.VlanFiltering == driver.BridgeEnableDisabled
		}
		out[int(m.Index)] = l
	}
	return out, nil
}

// attachPoints are the interfaces to attach to for the wanted ones: each
// Ethernet one, and the Ethernet ports of a wanted bridge. On a bridge's
// port the program sees a frame before the bridge does, and before
// br_netfilter, which would otherwise hand bridged GRE to netfilter (and
// the nf_tables tier) ahead of the program on the bridge. Bridges with
// VLAN filtering keep their frames: a port's frame may belong to a VLAN
// the bridge device itself is not on. The error names the interfaces
// skipped.
func (ls links) attachPoints(wanted []int) ([]int, error) {
	var out []int
	var errs []error
	for _, ifi := range wanted {
		l, ok := ls[ifi]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("bpf: interface %d: no such interface", ifi))
			continue
		case !l.ether:
			errs = append(errs, fmt.Errorf("bpf: interface %s is not Ethernet: its GRE stays on the nft/queue path", l.name))
			continue
		case ifi >= maxIfindex:
			errs = append(errs, fmt.Errorf("bpf: interface %s has ifindex %d, the program takes below %d: its GRE stays on the nft/queue path", l.name, ifi, maxIfindex))
			continue
		}
		out = append(out, ifi)
		if !l.bridge {
			continue
		}
		for port, pl := range ls {
			if pl.master == ifi && pl.ether && port < maxIfindex {
				out = append(out, port)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// devInfo is the device map value of interface ifi: a port of a bridge
// (without VLAN filtering) routes as the bridge.
func (ls links) devInfo(ifi int) devInfo {
	if m, ok := ls[ls[ifi].master]; ok && ls[ifi].master != 0 && m.bridge {
		return devInfo{L3: uint32(ls[ifi].master), MAC: m.mac}
	}
	return devInfo{L3: uint32(ifi), MAC: ls[ifi].mac}
}
