package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Report is what the bpf fast path needs from this host and what is
// missing (`pptpgw check`, `--gre-path auto`).
type Report struct {
	Kernel      string // uname release
	KernelOK    bool   // 5.10+ (bpf_fib_lookup with MTU check, cls_bpf direct action)
	TCX         bool   // 6.6+: attached with tcx, else cls_bpf
	CapBPF      bool   // CAP_BPF, or CAP_SYS_ADMIN on kernels before 5.8
	CapNetAdmin bool
	JIT         bool   // /proc/sys/net/core/bpf_jit_enable is not 0
	BPFFS       bool   // the pin directory is (or can be) on a writable bpffs
	Loads       bool   // the verifier accepted the program
	LoadError   string // why not
	// Missing says, one item each, what keeps bpf from working here
	// (empty: it works). A slow interpreter (no JIT) is named but does
	// not count as missing.
	Missing []string
}

// OK says whether the bpf fast path can run here.
func (r Report) OK() bool { return len(r.Missing) == 0 }

// Reason is Missing as one line ("" when OK).
func (r Report) Reason() string { return strings.Join(r.Missing, "; ") }

// Probe checks this host for the bpf fast path: kernel version,
// capabilities, JIT, bpffs under pinDir (DefaultPinDir when empty), and
// whether the program loads. It changes nothing on the host.
func Probe(pinDir string) Report {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	var r Report
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	maj, min, ok := parseVersion(r.Kernel)
	r.KernelOK = ok && (maj > 5 || maj == 5 && min >= 10)
	r.TCX = ok && (maj > 6 || maj == 6 && min >= 6)
	if !r.KernelOK {
		r.Missing = append(r.Missing, fmt.Sprintf("kernel %s is older than 5.10", r.Kernel))
	}
	caps := effectiveCaps()
	const capNetAdmin, capSysAdmin, capBPF = 12, 21, 39
	before58 := ok && (maj < 5 || maj == 5 && min < 8)
	r.CapNetAdmin = caps&(1<<capNetAdmin) != 0
	r.CapBPF = caps&(1<<capSysAdmin) != 0 || !before58 && caps&(1<<capBPF) != 0
	if !r.CapBPF {
		if before58 {
			r.Missing = append(r.Missing, "no CAP_SYS_ADMIN (kernels before 5.8 have no CAP_BPF)")
		} else {
			r.Missing = append(r.Missing, "no CAP_BPF")
		}
	}
	if !r.CapNetAdmin {
		r.Missing = append(r.Missing, "no CAP_NET_ADMIN")
	}
	jit, err := os.ReadFile("/proc/sys/net/core/bpf_jit_enable")
	r.JIT = err == nil && strings.TrimSpace(string(jit)) != "0"
	if p := bpffsProblem(pinDir); p != "" {
		r.Missing = append(r.Missing, p)
	} else {
		r.BPFFS = true
	}
	if err := loadOnce(); err != nil {
		r.LoadError = err.Error()
		r.Missing = append(r.Missing, "the program does not load: "+firstLine(r.LoadError))
	} else {
		r.Loads = true
	}
	return r
}

// loadOnce loads the program with tiny unpinned maps and lets go of it.
func loadOnce() error {
	_ = rlimit.RemoveMemlock() // as Open does
	coll, err := ebpf.NewCollection(collectionSpec(1, false))
	if err != nil {
		return err
	}
	coll.Close()
	return nil
}

// bpffsProblem says what keeps pinDir from holding pins ("" if
// nothing): its nearest existing ancestor must be a writable bpffs
// directory, unless it is under /sys/fs/bpf where Open mounts one.
func bpffsProblem(pinDir string) string {
	d := filepath.Clean(pinDir)
	for ; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
	}
	underSys := strings.HasPrefix(filepath.Clean(pinDir)+"/", "/sys/fs/bpf/")
	switch {
	case !onBPFFS(d) && !underSys:
		return pinDir + " is not on a bpf filesystem"
	case !onBPFFS(d):
		return "" // Open mounts bpffs on /sys/fs/bpf
	case unix.Access(d, unix.W_OK) != nil:
		return d + " is not writable"
	}
	return ""
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
