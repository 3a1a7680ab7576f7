package rules

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// New returns a go-iptables handle for IPv4 driving the binary at path
// ("" finds `iptables` on $PATH), waiting up to 5 s for the xtables lock.
func New(path string) (*Handle, error) {
	if path == "" {
		path = "iptables"
	}
	ipt, err := iptables.New(iptables.Path(path), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return &Handle{IPTables: ipt, path: path}, nil
}

// Handle is a go-iptables handle that also lists a whole table in one
// command, so that reading the state (every few seconds, --repair-rules)
// costs two iptables runs instead of one per chain.
type Handle struct {
	*iptables.IPTables
	path string
}

// ListTable returns `iptables -t table -S`.
func (h *Handle) ListTable(table string) ([]string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command(h.path, "-w", "5", "-t", table, "-S")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -t %s -S: %w: %s", h.path, table, err, strings.TrimSpace(errOut.String()))
	}
	return strings.Split(strings.TrimRight(out.String(), "\n"), "\n"), nil
}

// Verify compares the installed rules with cfg. It returns nil when they
// match exactly (chains, rules and their order, one jump each), otherwise
// one line per difference ("missing rule: -t raw -A ...", "extra rule:
// ..."), which `run` prints before refusing to start.
func Verify(ipt IPTables, cfg Config) ([]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := readState(ipt)
	if err != nil {
		return nil, err
	}
	return compare(st, cfg).lines(), nil
}

// Show returns pptpgw's current rules, whatever configuration installed
// them, as iptables-save lines: per table, the pptpgw chains, the jumps
// into them and their rules. Nothing installed gives no lines.
func Show(ipt IPTables) ([]string, error) {
	st, err := readState(ipt)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, table := range []string{TableMangle, TableRaw} {
		var decl, jumps, body []string
		for _, k := range st.order {
			t, name, _ := strings.Cut(k, "\x00")
			if t != table {
				continue
			}
			if ours(name) {
				decl = append(decl, ":"+name+" - [0:0]")
				for _, r := range st.rules[k] {
					body = append(body, "-A "+r.Chain+" "+joinSpec(r.Spec))
				}
				continue
			}
			for _, r := range st.rules[k] {
				if ours(jumpTarget(r.Spec)) {
					jumps = append(jumps, "-A "+r.Chain+" "+joinSpec(r.Spec))
				}
			}
		}
		if len(decl)+len(jumps) == 0 {
			continue
		}
		out = append(out, "*"+table)
		out = append(out, decl...)
		out = append(out, jumps...)
		out = append(out, body...)
		out = append(out, "COMMIT")
	}
	return out, nil
}

// HelperAttached returns the raw-table rules that attach the kernel's own
// PPTP helper (`-j CT --helper pptp`, in any chain), as "-t raw -A ..."
// lines an operator can turn into -D commands. The kernel helper and
// pptpgw would both rewrite Call IDs, so `run` refuses while any exist.
func HelperAttached(ipt IPTables) ([]string, error) {
	chains, err := ipt.ListChains(TableRaw)
	if err != nil {
		return nil, fmt.Errorf("list chains of table raw: %w", err)
	}
	var out []string
	for _, c := range chains {
		lines, err := ipt.List(TableRaw, c)
		if err != nil {
			return nil, fmt.Errorf("list chain raw %s: %w", c, err)
		}
		rs, err := parseRules(TableRaw, lines)
		if err != nil {
			return nil, fmt.Errorf("parse chain raw %s: %w", c, err)
		}
		for _, r := range rs {
			if jumpTarget(r.Spec) == "CT" && helperName(r.Spec) == "pptp" {
				out = append(out, r.String())
			}
		}
	}
	return out, nil
}

func helperName(spec []string) string {
	if i := slices.Index(spec, "--helper"); i >= 0 && i+1 < len(spec) {
		return spec[i+1]
	}
	return ""
}

// Mode is the iptables backend: the nf_tables flavour or legacy xtables.
type Mode string

// Backends `iptables -V` reports.
const (
	NFTables Mode = "nf_tables"
	Legacy   Mode = "legacy"
)

// Backend runs `PATH -V` (path "" means `iptables`) and returns which
// backend it drives. Rules added through one are invisible to the other,
// so the daemon logs it at start; both work for pptpgw.
func Backend(path string) (Mode, error) {
	if path == "" {
		path = "iptables"
	}
	var out bytes.Buffer
	cmd := exec.Command(path, "-V")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s -V: %w", path, err)
	}
	return parseVersion(out.String()), nil
}

// parseVersion reads "iptables v1.8.9 (nf_tables)"; versions before 1.8
// print no mode and are legacy.
func parseVersion(v string) Mode {
	if strings.Contains(v, "(nf_tables)") {
		return NFTables
	}
	return Legacy
}
