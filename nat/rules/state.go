package rules

import (
	"fmt"
	"strings"
)

// IPTables is the part of *iptables.IPTables (coreos/go-iptables) this
// package uses; tests substitute an in-memory fake.
type IPTables interface {
	ListChains(table string) ([]string, error)
	List(table, chain string) ([]string, error)
	NewChain(table, chain string) error
	DeleteChain(table, chain string) error
	ClearChain(table, chain string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	Delete(table, chain string, rulespec ...string) error
}

// state is what iptables holds in the tables pptpgw uses.
type state struct {
	chains map[string]bool   // table+"\x00"+chain
	rules  map[string][]Rule // table+"\x00"+chain, in chain order
	order  []string          // chain keys in listing order
}

func chainKey(table, chain string) string { return table + "\x00" + chain }

// readState lists every chain of the raw and mangle tables. It reads all
// chains, not just pptpgw's, to find jumps into pptpgw chains from
// anywhere (an operator's hand-made jump would bypass the ordering).
func readState(ipt IPTables) (*state, error) {
	st := &state{chains: map[string]bool{}, rules: map[string][]Rule{}}
	if tl, ok := ipt.(tableLister); ok {
		for _, table := range []string{TableRaw, TableMangle} {
			lines, err := tl.ListTable(table)
			if err != nil {
				return nil, fmt.Errorf("list table %s: %w", table, err)
			}
			if err := st.addTable(table, lines); err != nil {
				return nil, err
			}
		}
		return st, nil
	}
	for _, table := range []string{TableRaw, TableMangle} {
		chains, err := ipt.ListChains(table)
		if err != nil {
			return nil, fmt.Errorf("list chains of table %s: %w", table, err)
		}
		for _, c := range chains {
			lines, err := ipt.List(table, c)
			if err != nil {
				return nil, fmt.Errorf("list chain %s %s: %w", table, c, err)
			}
			rs, err := parseRules(table, lines)
			if err != nil {
				return nil, fmt.Errorf("parse chain %s %s: %w", table, c, err)
			}
			k := chainKey(table, c)
			st.chains[k] = true
			st.rules[k] = rs
			st.order = append(st.order, k)
		}
	}
	return st, nil
}

// tableLister lists a whole table in `iptables -S` form (Handle).
type tableLister interface {
	ListTable(table string) ([]string, error)
}

// addTable reads one table's `iptables -S` listing: its chains (-P, -N)
// in order, then its rules.
func (st *state) addTable(table string, lines []string) error {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "-P" || f[0] == "-N") {
			k := chainKey(table, f[1])
			st.chains[k] = true
			st.rules[k] = nil
			st.order = append(st.order, k)
		}
	}
	rs, err := parseRules(table, lines)
	if err != nil {
		return fmt.Errorf("parse table %s: %w", table, err)
	}
	for _, r := range rs {
		k := chainKey(table, r.Chain)
		if !st.chains[k] {
			return fmt.Errorf("table %s: rule in undeclared chain %s", table, r.Chain)
		}
		st.rules[k] = append(st.rules[k], r)
	}
	return nil
}

// ours reports whether a chain name belongs to pptpgw.
func ours(chain string) bool { return strings.HasPrefix(chain, ChainPrefix) }

// diff is how the installed rules differ from the desired ones.
type diff struct {
	missingChains []Chain
	missing       []Rule
	extra         []Rule
	extraChains   []string // "table chain"
	misordered    []string
}

// conflicts reports differences Install cannot fix by adding rules.
func (d *diff) conflicts() bool {
	return len(d.extra) > 0 || len(d.extraChains) > 0 || len(d.misordered) > 0
}

// lines describes the difference for a person, one item per line.
func (d *diff) lines() []string {
	var out []string
	for _, c := range d.missingChains {
		out = append(out, fmt.Sprintf("missing chain: -t %s -N %s", c.Table, c.Name))
	}
	for _, r := range d.missing {
		out = append(out, "missing rule: "+r.String())
	}
	for _, c := range d.extraChains {
		out = append(out, "extra chain: "+c)
	}
	for _, r := range d.extra {
		out = append(out, "extra rule: "+r.String())
	}
	out = append(out, d.misordered...)
	return out
}

// compare computes the difference between cfg's rules and st.
func compare(st *state, cfg Config) *diff {
	d := &diff{}
	want := Desired(cfg)
	known := map[string]bool{}
	for _, c := range Chains() {
		known[chainKey(c.Table, c.Name)] = true
	}

	// Contents of pptpgw's chains, compared in order.
	for _, c := range Chains() {
		k := chainKey(c.Table, c.Name)
		var w []Rule
		for _, r := range want {
			if r.Table == c.Table && r.Chain == c.Name {
				w = append(w, r)
			}
		}
		if !st.chains[k] {
			d.missingChains = append(d.missingChains, c)
			d.missing = append(d.missing, w...)
			continue
		}
		miss, extra := multisetDiff(w, st.rules[k])
		d.missing = append(d.missing, miss...)
		d.extra = append(d.extra, extra...)
		if len(miss) == 0 && len(extra) == 0 && !sameOrder(w, st.rules[k]) {
			d.misordered = append(d.misordered, fmt.Sprintf("rules out of order in chain %s %s", c.Table, c.Name))
		}
	}
	for _, k := range st.order {
		if _, name, _ := strings.Cut(k, "\x00"); ours(name) && !known[k] {
			d.extraChains = append(d.extraChains, strings.Replace(k, "\x00", " ", 1))
		}
	}

	// Jumps into pptpgw chains from anywhere else: exactly the desired ones.
	var jumps []Rule
	for _, k := range st.order {
		if _, name, _ := strings.Cut(k, "\x00"); ours(name) {
			continue
		}
		for _, r := range st.rules[k] {
			if ours(jumpTarget(r.Spec)) {
				jumps = append(jumps, r)
			}
		}
	}
	var wantJumps []Rule
	for _, r := range want {
		if r.IsJump() {
			wantJumps = append(wantJumps, r)
		}
	}
	miss, extra := multisetDiff(wantJumps, jumps)
	d.missing = append(d.missing, miss...)
	d.extra = append(d.extra, extra...)
	if len(miss) == 0 && len(extra) == 0 {
		// Jumps sharing a built-in chain (raw PREROUTING) keep their order.
		if !sameOrder(wantJumps, jumps) {
			d.misordered = append(d.misordered,
				fmt.Sprintf("jump to %s must come before jump to %s in raw PREROUTING", ChainNoTrack, ChainGREIn))
		}
	}
	return d
}

// multisetDiff returns the rules of want absent from got and the rules of
// got absent from want, counting duplicates.
func multisetDiff(want, got []Rule) (missing, extra []Rule) {
	have := map[string]int{}
	for _, r := range got {
		have[r.key()]++
	}
	for _, r := range want {
		if have[r.key()] > 0 {
			have[r.key()]--
		} else {
			missing = append(missing, r)
		}
	}
	for _, r := range got {
		if have[r.key()] > 0 {
			have[r.key()]--
			extra = append(extra, r)
		}
	}
	return missing, extra
}

// sameOrder reports whether a and b, equal as multisets, list the rules
// of each chain in the same relative order.
func sameOrder(a, b []Rule) bool {
	perChain := func(rs []Rule) map[string][]string {
		m := map[string][]string{}
		for _, r := range rs {
			k := chainKey(r.Table, r.Chain)
			m[k] = append(m[k], r.key())
		}
		return m
	}
	ma, mb := perChain(a), perChain(b)
	for k, ka := range ma {
		kb := mb[k]
		for i := range ka {
			if ka[i] != kb[i] {
				return false
			}
		}
	}
	return true
}
