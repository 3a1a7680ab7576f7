package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// packetReader reads pcap or pcapng, whichever the file is.
type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

func openCapture(r io.Reader) (packetReader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture header: %w", err)
	}
	if binary.BigEndian.Uint32(magic) == 0x0A0D0D0A {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("read pcapng: %w", err)
		}
		return ng, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("read pcap: %w", err)
	}
	return pr, nil
}

var errNotIPv4 = errors.New("not IPv4")

// ipv4Of returns the IPv4 packet inside a frame of link type lt, skipping
// Ethernet, VLAN tags and Linux cooked headers.
func ipv4Of(lt layers.LinkType, b []byte) ([]byte, error) {
	var etype uint16
	switch lt {
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, 12, 14:
		if len(b) > 0 && b[0]>>4 == 4 {
			return b, nil
		}
		return nil, errNotIPv4
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return nil, errNotIPv4
		}
		etype, b = binary.BigEndian.Uint16(b[12:]), b[14:]
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return nil, errNotIPv4
		}
		etype, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return nil, errNotIPv4
		}
		etype, b = binary.BigEndian.Uint16(b[0:]), b[20:]
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) < 5 || b[4]>>4 != 4 {
			return nil, errNotIPv4
		}
		return b[4:], nil
	default:
		return nil, fmt.Errorf("link type %v: %w", lt, errNotIPv4)
	}
	for etype == 0x8100 || etype == 0x88A8 {
		if len(b) < 4 {
			return nil, errNotIPv4
		}
		etype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
	}
	if etype != 0x0800 {
		return nil, errNotIPv4
	}
	return b, nil
}
