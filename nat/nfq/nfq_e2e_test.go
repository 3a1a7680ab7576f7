//go:build e2e

package nfq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

const markBit = 0x10000000

// udpPair returns a UDP receiver bound in b and a sender in a, connected
// to it, both closed at cleanup.
func udpPair(t *testing.T, a, b, dst string) (send func(string), recv func() (string, bool)) {
	t.Helper()
	var rx, tx net.PacketConn
	var err error
	inNS(t, b, func() { rx, err = net.ListenPacket("udp4", dst) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	inNS(t, a, func() { tx, err = net.ListenPacket("udp4", ":0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	to, _ := net.ResolveUDPAddr("udp4", dst)
	send = func(s string) {
		if _, err := tx.WriteTo([]byte(s), to); err != nil {
			t.Fatal(err)
		}
	}
	recv = func() (string, bool) {
		buf := make([]byte, 1500)
		rx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := rx.ReadFrom(buf)
		return string(buf[:n]), err == nil
	}
	return send, recv
}

func readProc(t *testing.T, ns string) []QueueStats {
	t.Helper()
	var st []QueueStats
	inNS(t, ns, func() {
		// /proc/net follows the process's first thread; thread-self
		// follows this one, which is in ns.
		f, err := os.Open("/proc/thread-self/net/netfilter/nfnetlink_queue")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if st, err = ReadProcStats(f); err != nil {
			t.Fatal(err)
		}
	})
	return st
}

// TestE2EVerdicts queues UDP between two namespaces and checks that
// accepted, dropped, rewritten and marked packets do what the verdict
// said, then that cancelling the context unbinds cleanly.
func TestE2EVerdicts(t *testing.T) {
	a, b := twoNS(t, "nfq")
	ipt := func(args ...string) { sh(t, append([]string{"ip", "netns", "exec", b, "iptables"}, args...)...) }
	ipt("-t", "mangle", "-A", "INPUT", "-p", "udp", "--dport", "9000", "-j", "NFQUEUE", "--queue-balance", "3:4")
	// filter INPUT runs after mangle INPUT: it sees the verdict's mark.
	ipt("-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "mark", "--mark", "0x10000000/0x10000000")

	core, logs := observer.New(zapcore.DebugLevel)
	var queues atomic.Uint32
	h := func(q uint16, pkt []byte, mark uint32, _ Meta) (Verdict, uint32, bool) {
		queues.Store(uint32(q))
		ihl := int(pkt[0]&0x0f) * 4
		payload := pkt[ihl+8:]
		switch {
		case bytes.HasPrefix(payload, []byte("drop")):
			return Drop, mark, false
		case bytes.HasPrefix(payload, []byte("mod-a")):
			payload[4] = 'b'
			pkt[ihl+6], pkt[ihl+7] = 0, 0 // UDP checksum 0: none (RFC 768)
			return Accept, mark, true
		case bytes.HasPrefix(payload, []byte("mark")):
			return Accept, mark | markBit, false
		}
		return Accept, mark, false
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r, err := Open(ctx, Config{Queue: 3, Queues: 2, NetNS: nsFD(t, b), Logger: zap.New(core)}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// One socket per queue: a second binder is refused, the first unharmed.
	if r2, err := Open(ctx, Config{Queue: 4, NetNS: nsFD(t, b)}, h); err == nil {
		r2.Close()
		t.Error("second Open of queue 4 succeeded")
	} else if !errors.Is(err, unix.EPERM) {
		t.Errorf("second Open of queue 4: %v, want EPERM", err)
	}

	send, recv := udpPair(t, a, b, "198.51.100.2:9000")
	for _, s := range []string{"hello", "drop-me", "mod-a", "mark", "bye"} {
		send(s)
	}
	var got []string
	for {
		s, ok := recv()
		if !ok {
			break
		}
		got = append(got, s)
	}
	if want := "hello mod-b mark bye"; strings.Join(got, " ") != want {
		t.Errorf("received %q, want %q", got, want)
	}
	if q := queues.Load(); q != 3 && q != 4 {
		t.Errorf("handler saw queue %d, want 3 or 4", q)
	}
	want := Stats{Packets: 5, Dropped: 1, Modified: 1, Marked: 1}
	if st := r.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	save := sh(t, "ip", "netns", "exec", b, "iptables-save", "-c", "-t", "filter")
	if !strings.Contains(save, "[1:") || !strings.Contains(save, "--mark 0x10000000/0x10000000") {
		t.Errorf("marked packet not counted by the mark rule:\n%s", save)
	}

	ps := readProc(t, b)
	if len(ps) != 2 || ps[0].Queue != 3 || ps[1].Queue != 4 {
		t.Fatalf("proc stats = %+v, want queues 3 and 4", ps)
	}
	// The kernel caps the copy range at 0xffff minus a netlink attribute
	// header (NFQNL_MAX_COPY_RANGE).
	if n := ps[0].IDSequence + ps[1].IDSequence; n != 5 || ps[0].CopyMode != 2 || ps[0].CopyRange != 65531 {
		t.Errorf("proc stats = %+v, want 5 ids, copy mode 2, range 65531", ps)
	}

	cancel()
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("runner did not stop after cancel")
	}
	if err := r.Wait(); err != nil {
		t.Errorf("Wait after cancel = %v", err)
	}
	if ps := readProc(t, b); len(ps) != 0 {
		t.Errorf("queues still bound after stop: %+v", ps)
	}
	if n := logs.FilterMessage("queue stopped").Len(); n != 2 {
		t.Errorf("%d 'queue stopped' logs, want 2", n)
	}
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			t.Errorf("log at %s: %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
	// Fail-closed: with nobody bound and no bypass, packets are dropped.
	send("after")
	if s, ok := recv(); ok {
		t.Errorf("received %q with no queue bound", s)
	}
}

// twoNS is two namespaces <tag>a and <tag>b on one veth: a has
// 198.51.100.1, b 198.51.100.2.
func twoNS(t *testing.T, tag string) (a, b string) {
	t.Helper()
	needRoot(t)
	a, b = newNS(t, tag+"a"), newNS(t, tag+"b")
	link(t, a, "va", "198.51.100.1/24", b, "vb", "198.51.100.2/24")
	return a, b
}

// queueUDP queues the UDP to port arriving in ns to NFQUEUE queue.
func queueUDP(t *testing.T, ns, port, queue string) {
	t.Helper()
	sh(t, "ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "udp", "--dport", port, "-j", "NFQUEUE", "--queue-num", queue)
}

// TestE2EFailOpen holds one packet in a queue of length 1: with the
// fail-open flag the kernel accepts the packets that overflow it.
func TestE2EFailOpen(t *testing.T) {
	a, b := twoNS(t, "fo")
	queueUDP(t, b, "9001", "9")
	release := make(chan struct{})
	h := func(q uint16, pkt []byte, mark uint32, _ Meta) (Verdict, uint32, bool) {
		<-release
		return Accept, mark, false
	}
	r, err := Open(t.Context(), Config{Queue: 9, MaxQueueLen: 1, FailOpen: true, NetNS: nsFD(t, b)}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	send, recv := udpPair(t, a, b, "198.51.100.2:9001")
	send("held")
	time.Sleep(100 * time.Millisecond) // let "held" reach the handler
	send("over1")
	send("over2")
	var got []string
	for {
		s, ok := recv()
		if !ok {
			break
		}
		got = append(got, s)
	}
	close(release)
	if s, _ := recv(); s != "held" {
		t.Errorf("held packet after release = %q", s)
	}
	if strings.Join(got, " ") != "over1 over2" {
		t.Errorf("while the queue was full received %q, want over1 over2", got)
	}
}

// TestE2EBurst sends bursts that the queue takes in batches: every packet
// is rewritten and arrives once, in order.
func TestE2EBurst(t *testing.T) {
	a, b := twoNS(t, "bu")
	queueUDP(t, b, "9002", "11")
	h := func(q uint16, pkt []byte, mark uint32, _ Meta) (Verdict, uint32, bool) {
		ihl := int(pkt[0]&0x0f) * 4
		pkt[ihl+8] = 'B'
		pkt[ihl+6], pkt[ihl+7] = 0, 0 // UDP checksum 0: none (RFC 768)
		return Accept, mark, true
	}
	r, err := Open(t.Context(), Config{Queue: 11, NetNS: nsFD(t, b)}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	send, recv := udpPair(t, a, b, "198.51.100.2:9002")
	const bursts, per = 20, 100
	for i := range bursts {
		for j := range per {
			send(fmt.Sprintf("b%05d", i*per+j))
		}
		for j := range per {
			s, ok := recv()
			if want := fmt.Sprintf("B%05d", i*per+j); !ok || s != want {
				t.Fatalf("received %q (%v), want %q", s, ok, want)
			}
		}
	}
	if st := r.Stats(); st.Packets != bursts*per || st.Modified != bursts*per || st.VerdictErrors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestE2EMeta queues a packet at INPUT and one at OUTPUT: the handler sees
// the hook and the interface each came in on or goes out through, and
// Close unbinds the queue.
func TestE2EMeta(t *testing.T) {
	a, b := twoNS(t, "me")
	ipt := func(args ...string) { sh(t, append([]string{"ip", "netns", "exec", b, "iptables"}, args...)...) }
	ipt("-A", "INPUT", "-p", "udp", "--dport", "9003", "-j", "NFQUEUE", "--queue-num", "13")
	ipt("-A", "OUTPUT", "-p", "udp", "--dport", "9004", "-j", "NFQUEUE", "--queue-num", "13")
	var vb *net.Interface
	var err error
	inNS(t, b, func() { vb, err = net.InterfaceByName("vb") })
	if err != nil {
		t.Fatal(err)
	}
	metas := make(chan Meta, 4)
	h := func(q uint16, pkt []byte, mark uint32, m Meta) (Verdict, uint32, bool) {
		metas <- m
		return Accept, mark, false
	}
	r, err := Open(t.Context(), Config{Queue: 13, NetNS: nsFD(t, b)}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in, _ := udpPair(t, a, b, "198.51.100.2:9003")
	out, _ := udpPair(t, b, a, "198.51.100.1:9004")
	in("in")
	if m := <-metas; m != (Meta{Hook: HookInput, HasInDev: true, InDev: uint32(vb.Index)}) {
		t.Errorf("INPUT meta = %+v, want in on vb (%d)", m, vb.Index)
	}
	out("out")
	if m := <-metas; m != (Meta{Hook: HookOutput, OutDev: uint32(vb.Index)}) {
		t.Errorf("OUTPUT meta = %+v, want out through vb (%d)", m, vb.Index)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	select {
	case <-r.Done():
	default:
		t.Error("Done open after Close")
	}
	if ps := readProc(t, b); len(ps) != 0 {
		t.Errorf("queue still bound after Close: %+v", ps)
	}
}

// TestE2ECloseUnderLoad closes the runner while packets keep coming: Close
// returns promptly, the queue is unbound, and the stop logs no warnings.
func TestE2ECloseUnderLoad(t *testing.T) {
	a, b := twoNS(t, "cl")
	queueUDP(t, b, "9005", "15")
	core, logs := observer.New(zapcore.DebugLevel)
	var seen atomic.Uint64
	h := func(q uint16, pkt []byte, mark uint32, _ Meta) (Verdict, uint32, bool) {
		seen.Add(1)
		return Accept, mark, false
	}
	r, err := Open(t.Context(), Config{Queue: 15, NetNS: nsFD(t, b), Logger: zap.New(core)}, h)
	if err != nil {
		t.Fatal(err)
	}
	send, _ := udpPair(t, a, b, "198.51.100.2:9005")
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case <-stop:
				return
			default:
				send("load")
			}
		}
	}()
	for seen.Load() < 1000 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close under load did not return")
	}
	close(stop)
	<-sent
	if ps := readProc(t, b); len(ps) != 0 {
		t.Errorf("queue still bound after Close: %+v", ps)
	}
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			t.Errorf("log at %s: %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
}
