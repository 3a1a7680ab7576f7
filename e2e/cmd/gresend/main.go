// Command gresend floods one interface with identical prebuilt Ethernet
// frames carrying enhanced GRE (PPTP's) for the e2e throughput benchmark
// (`make bench-e2e`): AF_PACKET, sendmmsg in batches, no qdisc. It prints
// one JSON line: {"sent": N, "seconds": S, "pps": P}.
//
//	gresend --ifname eth0 --dst-mac 02:..:01 --src 198.51.100.2 --dst 198.51.100.1 --call-id 40001 --size 64 --duration 2s
//
// --size is the IPv4 packet's total length (at least 36: IPv4, GRE with
// key and sequence number, and a PPP header).
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	ifname := flag.String("ifname", "", "interface to send on")
	dstMAC := flag.String("dst-mac", "", "destination MAC (the next hop's)")
	src := flag.String("src", "", "IPv4 source")
	dst := flag.String("dst", "", "IPv4 destination")
	callID := flag.Uint("call-id", 0, "GRE Call ID")
	size := flag.Int("size", 64, "IPv4 total length")
	dur := flag.Duration("duration", 2*time.Second, "how long to send")
	threads := flag.Int("threads", 1, "sender threads (one socket each)")
	batch := flag.Int("batch", 64, "frames per sendmmsg")
	flag.Parse()
	if err := run(*ifname, *dstMAC, *src, *dst, uint16(*callID), *size, *dur, *threads, *batch); err != nil {
		fmt.Fprintf(os.Stderr, "gresend: %v\n", err)
		os.Exit(1)
	}
}

func run(ifname, dstMAC, src, dst string, callID uint16, size int, dur time.Duration, threads, batch int) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(dstMAC)
	if err != nil {
		return fmt.Errorf("--dst-mac: %w", err)
	}
	s, err := netip.ParseAddr(src)
	if err != nil {
		return fmt.Errorf("--src: %w", err)
	}
	d, err := netip.ParseAddr(dst)
	if err != nil {
		return fmt.Errorf("--dst: %w", err)
	}
	if size < 36 || size > 1500 {
		return fmt.Errorf("--size %d: want 36..1500", size)
	}
	frame := buildFrame(ifi.HardwareAddr, hw, s.As4(), d.As4(), callID, size)
	var sent atomic.Uint64
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendLoop(ifi.Index, frame, batch, deadline, &sent); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"sent": sent.Load(), "seconds": secs, "pps": float64(sent.Load()) / secs})
}

// buildFrame returns Ethernet + IPv4 + GRE v1 (K, S) + PPP (ff 03 00 21)
// padded with zeros to an IPv4 total length of size.
func buildFrame(srcMAC, dstMAC net.HardwareAddr, src, dst [4]byte, callID uint16, size int) []byte {
	f := make([]byte, 14+size)
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 47
	binary.BigEndian.PutUint16(ip[2:], uint16(size))
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	gre := ip[20:]
	gre[0], gre[1] = 0x30, 0x01 // K, S; version 1
	binary.BigEndian.PutUint16(gre[2:], 0x880b)
	binary.BigEndian.PutUint16(gre[4:], uint16(size-20-12)) // payload length
	binary.BigEndian.PutUint16(gre[6:], callID)
	binary.BigEndian.PutUint32(gre[8:], 1)
	copy(gre[12:], []byte{0xff, 0x03, 0x00, 0x21})
	return f
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func sendLoop(ifindex int, frame []byte, batch int, deadline time.Time, sent *atomic.Uint64) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	iov := unix.Iovec{Base: &frame[0]}
	iov.SetLen(len(frame))
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	for n := 0; ; n++ {
		if n&63 == 0 && time.Now().After(deadline) {
			return nil
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(batch), 0, 0, 0)
		if e != 0 {
			if e == unix.ENOBUFS || e == unix.EAGAIN {
				continue
			}
			return fmt.Errorf("sendmmsg: %w", e)
		}
		sent.Add(uint64(r))
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
