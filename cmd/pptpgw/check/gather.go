package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/pptpgw/pptpgw/nat/bpf"
	"github.com/pptpgw/pptpgw/nat/nfq"
	"github.com/pptpgw/pptpgw/nat/rules"
)

// Gather collects the facts of this host (this network namespace) for
// the rules cfg expects and the GRE path grePath (bpf: probed with its
// pins in bpfPinDir). It never fails: what cannot be read is recorded as
// an error in the facts, for the checks to report.
func Gather(cfg rules.Config, grePath, bpfPinDir string) *Facts {
	f := &Facts{Rules: cfg, Saves: map[string]Save{}, RPFilter: map[string]Sysctl{}, GREPath: grePath}
	if grePath != "kernel" && grePath != "queue" {
		r := bpf.Probe(bpfPinDir)
		f.BPF = &r
	}
	f.Paths = gatherFastPaths(bpfPinDir) // paths.go
	f.CapEff, f.CapErr = capEff()
	f.IPForward = readSysctl("net/ipv4/ip_forward")
	f.HelperAutoAssign = readSysctl("net/netfilter/nf_conntrack_helper")

	if mode, err := rules.Backend(""); err != nil {
		f.DefaultErr = err.Error()
	} else if mode == rules.NFTables {
		f.Default = FlavourNFT
	} else {
		f.Default = FlavourLegacy
	}
	f.Saves[FlavourNFT] = save("iptables-nft-save")
	// iptables-legacy-save would load the legacy modules to print empty
	// tables: read it only when a legacy table exists.
	if names, err := os.ReadFile("/proc/net/ip_tables_names"); err == nil && len(bytes.TrimSpace(names)) > 0 {
		f.Saves[FlavourLegacy] = save("iptables-legacy-save")
	}
	// Before 1.8 iptables has no -nft/-legacy binaries: plain iptables-save.
	if f.Default != "" && !f.Saves[f.Default].Ran && f.Saves[f.Default].Err == "" {
		f.Saves[f.Default] = save("iptables-save")
	}

	if _, err := exec.LookPath("nft"); err == nil {
		f.NFTRan = true
		out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
		f.NFT = string(out)
		if err != nil {
			f.NFTErr = fmt.Sprintf("nft list ruleset: %v: %s", err, bytes.TrimSpace(out))
		}
	}

	if fh, err := os.Open(nfq.ProcStatsPath); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			f.QueuesErr = err.Error()
		} // no file: no queue bound since nfnetlink_queue was loaded
	} else {
		f.Queues, err = nfq.ReadProcStats(fh)
		fh.Close()
		if err != nil {
			f.QueuesErr = err.Error()
		}
	}

	f.DefaultRoutes = defaultRoutes()
	f.RPFilter["all"] = readSysctl("net/ipv4/conf/all/rp_filter")
	ifs, err := net.Interfaces()
	if err != nil {
		f.LinksErr = err.Error()
	}
	for _, i := range ifs {
		f.Links = append(f.Links, Link{Name: i.Name, MTU: i.MTU, Up: i.Flags&net.FlagUp != 0})
		f.RPFilter[i.Name] = readSysctl("net/ipv4/conf/" + i.Name + "/rp_filter")
	}
	return f
}

// save runs an iptables-save flavour with counters.
func save(bin string) Save {
	if _, err := exec.LookPath(bin); err != nil {
		return Save{}
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, "-c")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return Save{Ran: true, Err: fmt.Sprintf("%s: %v: %s", bin, err, bytes.TrimSpace(errOut.Bytes()))}
	}
	return Save{Ran: true, Text: out.String()}
}

func readSysctl(path string) Sysctl {
	b, err := os.ReadFile("/proc/sys/" + path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Sysctl{}
	case err != nil:
		return Sysctl{Present: true, Err: err.Error()}
	}
	return Sysctl{Present: true, Value: strings.TrimSpace(string(b))}
}

// capEff reads the effective capabilities from /proc/self/status.
func capEff() (uint64, string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "CapEff:"); found {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, err.Error()
			}
			return n, ""
		}
	}
	return 0, "no CapEff in /proc/self/status"
}

// defaultRoutes lists the interfaces of IPv4 default routes, from
// /proc/net/route (main table; per network namespace).
func defaultRoutes() []string {
	fh, err := os.Open("/proc/net/route")
	if err != nil {
		return nil
	}
	defer fh.Close()
	return parseRoutes(fh)
}

// parseRoutes reads /proc/net/route: Iface Destination Gateway Flags
// RefCnt Use Metric Mask ..., hex fields.
func parseRoutes(r interface{ Read([]byte) (int, error) }) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] == "Iface" {
			continue
		}
		if f[1] == "00000000" && f[7] == "00000000" {
			dup := false
			for _, o := range out {
				dup = dup || o == f[0]
			}
			if !dup {
				out = append(out, f[0])
			}
		}
	}
	return out
}
