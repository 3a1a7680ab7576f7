package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/florianl/go-tc"
	"github.com/florianl/go-tc/core"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The cls_bpf filter: on clsact's ingress, this priority and handle, and
// named so that Remove finds it with no pins to go by.
const (
	clsName   = "pptpgw_gre"
	clsPrio   = 1
	clsHandle = 0x50505450 // "PPTP"
)

// SetInterfaces converges the attachments to exactly the interfaces
// ifindexes (in the configured network namespace): the program is
// attached on the ingress of new ones and detached from the others. An
// interface that is not Ethernet is skipped and named in the error; the
// others are attached all the same.
func (b *Backend) SetInterfaces(ifindexes []int) error {
	return inNS(b.cfg.NetNS, func() error { return b.setInterfaces(ifindexes) })
}

func (b *Backend) setInterfaces(ifindexes []int) error {
	ls, err := readLinks()
	if err != nil {
		return err
	}
	want, err := ls.attachPoints(ifindexes)
	errs := []error{err}
	// Attach first, detach after: an interface changing from cls_bpf to
	// tcx has both for a moment (tcx runs first), never neither. The
	// device map learns a new interface before the program runs on it.
	errs = append(errs, b.syncDevs(ls, want))
	for _, ifi := range want {
		if b.useTCX && b.tcx[ifi] != nil || !b.useTCX && b.cls[ifi] {
			continue
		}
		if b.useTCX {
			err := b.attachTCX(ifi)
			if !errors.Is(err, ebpf.ErrNotSupported) {
				errs = append(errs, err)
				continue
			}
			b.log.Info("bpf: the kernel has no tcx, attaching with cls_bpf", zap.Error(err))
			b.useTCX = false
		}
		errs = append(errs, b.attachCls(ifi))
	}
	for ifi := range b.tcx {
		if !slices.Contains(want, ifi) || !b.useTCX {
			errs = append(errs, b.detachTCX(ifi))
		}
	}
	for ifi := range b.cls {
		if !slices.Contains(want, ifi) || b.useTCX {
			errs = append(errs, b.detachCls(ifi))
		}
	}
	return errors.Join(append(errs, b.syncDevs(ls, b.Interfaces()))...)
}

// syncDevs makes the device map hold exactly the interfaces ifindexes,
// each with what the program needs to know of it (links.devInfo): the
// program redirects only to interfaces in it, and takes frames only
// from those. The map is an array by ifindex (a zero entry is none),
// read whole once, then written where it differs from b.devs.
func (b *Backend) syncDevs(ls links, ifindexes []int) error {
	var errs []error
	if b.devs == nil {
		b.devs = map[uint32]devInfo{}
		var ifi uint32
		var info devInfo
		it := b.dev.Iterate()
		for it.Next(&ifi, &info) {
			if info != (devInfo{}) {
				b.devs[ifi] = info
			}
		}
		errs = append(errs, it.Err())
	}
	for ifi := range b.devs {
		if !slices.Contains(ifindexes, int(ifi)) {
			errs = append(errs, b.dev.Put(ifi, devInfo{}))
			delete(b.devs, ifi)
		}
	}
	for _, i := range ifindexes {
		ifi, info := uint32(i), ls.devInfo(i)
		if old, ok := b.devs[ifi]; ok && old == info {
			continue
		}
		if err := b.dev.Put(ifi, info); err != nil {
			errs = append(errs, err)
			continue
		}
		b.devs[ifi] = info
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bpf: map %s: %w", MapDevName, err)
	}
	return nil
}

// Interfaces returns the ifindexes the program is attached to.
func (b *Backend) Interfaces() []int {
	var out []int
	for ifi := range b.tcx {
		out = append(out, ifi)
	}
	for ifi := range b.cls {
		out = append(out, ifi)
	}
	slices.Sort(out)
	return slices.Compact(out) // both ways at once while switching modes
}

func tcxPin(dir string, ifindex int) string {
	return filepath.Join(dir, "tcx_"+strconv.Itoa(ifindex))
}

func tcxPinIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "tcx_")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func (b *Backend) attachTCX(ifindex int) error {
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: b.prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("bpf: tcx attach to interface %d: %w", ifindex, err)
	}
	pin := tcxPin(b.cfg.PinDir, ifindex)
	_ = os.Remove(pin)
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("bpf: pin tcx link of interface %d: %w", ifindex, err)
	}
	b.tcx[ifindex] = l
	b.log.Info("bpf: attached", zap.Int("ifindex", ifindex), zap.String("mode", "tcx"))
	return nil
}

func (b *Backend) detachTCX(ifindex int) error {
	l := b.tcx[ifindex]
	delete(b.tcx, ifindex)
	defer l.Close()
	if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) {
		return fmt.Errorf("bpf: tcx detach from interface %d: %w", ifindex, err)
	}
	b.log.Info("bpf: detached", zap.Int("ifindex", ifindex), zap.String("mode", "tcx"))
	return l.Unpin()
}

// clsFilter is our filter on ifindex; fd is the program (0 for a delete).
func clsFilter(ifindex int, fd int) *tc.Object {
	o := &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifindex), Handle: clsHandle,
			Parent: core.BuildHandle(tc.HandleRoot, tc.HandleMinIngress), Info: core.FilterInfo(clsPrio, unix.ETH_P_ALL)},
		Attribute: tc.Attribute{Kind: "bpf"},
	}
	if fd != 0 {
		ufd, name, flags := uint32(fd), clsName, uint32(tc.BpfActDirect)
		o.Attribute.BPF = &tc.Bpf{FD: &ufd, Name: &name, Flags: &flags}
	}
	return o
}

// attachCls makes sure of a clsact qdisc and replaces our filter (an
// atomic swap of the program when it is there already).
func (b *Backend) attachCls(ifindex int) error {
	nl, err := tc.Open(&tc.Config{})
	if err != nil {
		return fmt.Errorf("bpf: rtnetlink: %w", err)
	}
	defer nl.Close()
	qd := &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifindex), Handle: core.BuildHandle(tc.HandleRoot, 0),
			Parent: tc.HandleIngress},
		Attribute: tc.Attribute{Kind: "clsact"},
	}
	if err := nl.Qdisc().Add(qd); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bpf: add clsact qdisc to interface %d: %w", ifindex, err)
	}
	if err := nl.Filter().Replace(clsFilter(ifindex, b.prog.FD())); err != nil {
		return fmt.Errorf("bpf: cls_bpf attach to interface %d: %w", ifindex, err)
	}
	b.cls[ifindex] = true
	b.log.Info("bpf: attached", zap.Int("ifindex", ifindex), zap.String("mode", "cls_bpf"))
	return nil
}

func (b *Backend) detachCls(ifindex int) error {
	delete(b.cls, ifindex)
	nl, err := tc.Open(&tc.Config{})
	if err != nil {
		return fmt.Errorf("bpf: rtnetlink: %w", err)
	}
	defer nl.Close()
	if err := nl.Filter().Delete(clsFilter(ifindex, 0)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("bpf: cls_bpf detach from interface %d: %w", ifindex, err)
	}
	b.log.Info("bpf: detached", zap.Int("ifindex", ifindex), zap.String("mode", "cls_bpf"))
	return nil
}

// clsAttached lists the interfaces carrying our cls_bpf filter.
func clsAttached() ([]int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("bpf: list interfaces: %w", err)
	}
	nl, err := tc.Open(&tc.Config{})
	if err != nil {
		return nil, fmt.Errorf("bpf: rtnetlink: %w", err)
	}
	defer nl.Close()
	var out []int
	for _, ifi := range ifs {
		fs, err := nl.Filter().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifi.Index),
			Parent: core.BuildHandle(tc.HandleRoot, tc.HandleMinIngress)})
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range fs {
			if f.Kind == "bpf" && f.BPF != nil && f.BPF.Name != nil && *f.BPF.Name == clsName {
				out = append(out, ifi.Index)
				break
			}
		}
	}
	return out, nil
}

// removeClsFilters deletes our cls_bpf filter wherever it is.
func removeClsFilters() error {
	ifs, err := clsAttached()
	if err != nil {
		return err
	}
	b := &Backend{cls: map[int]bool{}, log: zap.NewNop()}
	var errs []error
	for _, ifi := range ifs {
		errs = append(errs, b.detachCls(ifi))
	}
	return errors.Join(errs...)
}

// adopt takes over what an earlier run left attached, moving it to the
// new program: pinned tcx links (updated in place) and cls_bpf filters
// (replaced in place). Links whose interface is gone are dropped.
func (b *Backend) adopt() error {
	ents, err := os.ReadDir(b.cfg.PinDir)
	if err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	for _, e := range ents {
		ifi, ok := tcxPinIndex(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(b.cfg.PinDir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err == nil {
			if err = l.Update(b.prog); err == nil {
				b.tcx[ifi] = l
				continue
			}
			l.Close()
		}
		b.log.Info("bpf: dropping a stale tcx link", zap.String("pin", path), zap.Error(err))
		_ = unpinLink(path)
	}
	return inNS(b.cfg.NetNS, func() error {
		ifs, err := clsAttached()
		if err != nil {
			return err
		}
		for _, ifi := range ifs {
			if err := b.attachCls(ifi); err != nil {
				return err
			}
		}
		ls, err := readLinks()
		if err != nil {
			return err
		}
		return b.syncDevs(ls, b.Interfaces())
	})
}

// inNS runs fn on a thread in the network namespace fd (0: the caller's):
// tcx attachment, rtnetlink sockets and ifindexes belong to the thread's
// namespace.
func inNS(fd int, fn func() error) error {
	if fd == 0 {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bpf: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bpf: setns: %w", err)
	}
	defer func() {
		// A thread left in the wrong namespace dies with its goroutine.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// ensurePinDir creates dir on a bpffs, mounting bpffs on /sys/fs/bpf
// when dir is under it and it is not mounted.
func ensurePinDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err == nil && onBPFFS(dir) {
		return nil
	}
	if !strings.HasPrefix(filepath.Clean(dir)+"/", "/sys/fs/bpf/") {
		return fmt.Errorf("bpf: pin directory %s is not on a bpf filesystem", dir)
	}
	if onBPFFS("/sys/fs/bpf") {
		return fmt.Errorf("bpf: cannot create pin directory %s", dir)
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("bpf: mount bpffs on /sys/fs/bpf: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	return nil
}

func onBPFFS(path string) bool {
	var st unix.Statfs_t
	// Type is int32 on 32-bit targets (arm, mips), where the magic overflows it.
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == uint32(unix.BPF_FS_MAGIC)
}

// haveTCX says whether the kernel has tcx (6.6+).
func haveTCX() bool {
	maj, min, ok := kernelVersion()
	return ok && (maj > 6 || maj == 6 && min >= 6)
}

func kernelVersion() (major, minor int, ok bool) {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return 0, 0, false
	}
	return parseVersion(unix.ByteSliceToString(u.Release[:]))
}

// parseVersion reads "6.18.44-foo" as 6, 18.
func parseVersion(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	minor, err2 := strconv.Atoi(minStr)
	return major, minor, err1 == nil && err2 == nil
}
