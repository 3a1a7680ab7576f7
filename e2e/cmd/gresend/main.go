// Command gresend floods one interface with prebuilt Ethernet
// frames carrying enhanced GRE (PPTP's) for the e2e throughput benchmark
// (`make bench-e2e`): AF_PACKET, sendmmsg in batches, no qdisc. It prints
// one JSON line: {"sent": N, "seconds": S, "pps": P}.
//
//	gresend --ifname eth0 --dst-mac 02:..:01 --src 198.51.100.2 --dst 198.51.100.1 --call-id 40001 --size 64 --duration 2s
//
// --size is the IPv4 packet's total length (at least 36: IPv4, GRE with
// key and sequence number, and a PPP header).
//
// Many calls (the scale bench): --call-ids N sends Call IDs --call-id,
// --call-id+1, ... (N of them), or --call-id-file FILE the Call IDs listed in
// FILE (decimal, separated by white space); one frame per Call ID is built
// up front and the frames are sent round robin, so a packet costs no more
// than with one call. --count stops after that many frames (e.g. one pass
// over every call, to create the kernel's GRE conntrack entries).
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pptpgw/pptpgw/alg/hdr"
)

func main() {
	ifname := flag.String("ifname", "", "interface to send on")
	dstMAC := flag.String("dst-mac", "", "destination MAC (the next hop's)")
	src := flag.String("src", "", "IPv4 source")
	dst := flag.String("dst", "", "IPv4 destination")
	callID := flag.Uint("call-id", 0, "GRE Call ID (the first one with --call-ids)")
	nIDs := flag.Int("call-ids", 1, "cycle over this many Call IDs counting up from --call-id")
	idFile := flag.String("call-id-file", "", "cycle over the Call IDs in this file instead")
	size := flag.Int("size", 64, "IPv4 total length")
	dur := flag.Duration("duration", 2*time.Second, "how long to send")
	count := flag.Uint64("count", 0, "stop after this many frames (per thread; 0: --duration only)")
	threads := flag.Int("threads", 1, "sender threads (one socket each)")
	batch := flag.Int("batch", 64, "frames per sendmmsg")
	flag.Parse()
	ids, err := callIDs(uint16(*callID), *nIDs, *idFile)
	if err == nil {
		err = run(*ifname, *dstMAC, *src, *dst, ids, *size, *dur, *count, *threads, *batch)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gresend: %v\n", err)
		os.Exit(1)
	}
}

// callIDs returns the Call IDs to cycle over: those in file when it is
// given, else n counting up from first (wrapping at 65535).
func callIDs(first uint16, n int, file string) ([]uint16, error) {
	if file == "" {
		if n < 1 || n > 1<<16 {
			return nil, fmt.Errorf("--call-ids %d: want 1..65536", n)
		}
		ids := make([]uint16, n)
		for i := range ids {
			ids[i] = first + uint16(i)
		}
		return ids, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--call-id-file: %w", err)
	}
	return parseCallIDs(string(b))
}

// parseCallIDs reads decimal Call IDs separated by white space.
func parseCallIDs(s string) ([]uint16, error) {
	var ids []uint16
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseUint(f, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("Call ID %q: %w", f, err)
		}
		ids = append(ids, uint16(v))
	}
	if len(ids) == 0 {
		return nil, errors.New("no Call IDs")
	}
	return ids, nil
}

func run(ifname, dstMAC, src, dst string, ids []uint16, size int, dur time.Duration, count uint64, threads, batch int) error {
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
	if batch < 1 {
		return fmt.Errorf("--batch %d: want at least 1", batch)
	}
	frames := make([][]byte, len(ids))
	for i, id := range ids {
		frames[i] = buildFrame(ifi.HardwareAddr, hw, s.As4(), d.As4(), id, size)
	}
	var sent atomic.Uint64
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendLoop(ifi.Index, frames, batch, deadline, count, &sent); err != nil {
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
	binary.BigEndian.PutUint16(ip[hdr.IPv4OffChecksum:], hdr.Checksum(0, ip[:hdr.IPv4MinLen]))
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

// sendLoop sends the frames round robin until the deadline (or count
// frames). Every frame has its mmsghdr and iovec built once: msgs holds the
// frames in order followed by the first batch of them again, so any window
// of batch entries starting below len(frames) is contiguous, and a send is
// one sendmmsg from the current offset with no per-packet work.
func sendLoop(ifindex int, frames [][]byte, batch int, deadline time.Time, count uint64, sent *atomic.Uint64) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	n := len(frames)
	iovs := make([]unix.Iovec, n+batch)
	msgs := make([]mmsghdr, n+batch)
	for i := range msgs {
		f := frames[i%n]
		iovs[i].Base = &f[0]
		iovs[i].SetLen(len(f))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	off, done := 0, uint64(0)
	for i := 0; ; i++ {
		if i&63 == 0 && time.Now().After(deadline) {
			return nil
		}
		want := uint64(batch)
		if count > 0 {
			if done >= count {
				return nil
			}
			want = min(want, count-done)
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[off])), uintptr(want), 0, 0, 0)
		if e != 0 {
			if e == unix.ENOBUFS || e == unix.EAGAIN {
				continue
			}
			return fmt.Errorf("sendmmsg: %w", e)
		}
		sent.Add(uint64(r))
		done += uint64(r)
		off = (off + int(r)) % n
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
