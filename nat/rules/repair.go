package rules

import (
	"fmt"
	"strings"
)

// RepairReport is what one Repair found and changed.
type RepairReport struct {
	// Differences are Verify's lines before the repair; none means
	// everything was in place and nothing was touched.
	Differences []string
	// Removed are rules Repair deleted: the contents of a pptpgw chain
	// that held rules cfg does not want or held them out of order (the
	// chain is flushed and refilled), and jumps into pptpgw's chains that
	// cfg does not want or that were out of order.
	Removed []Rule
	// RemovedChains are PPTPGW-* chains cfg does not know ("table chain").
	RemovedChains []string
	// Added is what was put back, as Install reports it.
	Added Report
}

// Restored is the number of chains and rules Repair put back.
func (r RepairReport) Restored() int { return len(r.Added.Chains) + len(r.Added.Rules) }

// Repair makes the installed rules what cfg wants, touching nothing when
// they already are (Verify is empty): it adds what is missing at its place,
// as Install does, and unlike Install also replaces what differs, so that
// an operator's firewall reload (`iptables-restore` without --noflush,
// which deletes pptpgw's chains, or a script that re-adds a jump twice) is
// undone. Rules outside pptpgw's chains other than jumps into them are
// never touched. It is idempotent; after a nil error Verify is empty.
func Repair(ipt IPTables, cfg Config) (RepairReport, error) {
	var rep RepairReport
	st, d, err := inspect(ipt, cfg)
	if err != nil {
		return rep, err
	}
	rep.Differences = d.lines()
	if len(rep.Differences) == 0 {
		return rep, nil
	}
	if !d.conflicts() {
		rep.Added, err = add(ipt, cfg, st, d) // the usual case: a reload deleted everything
		return rep, err
	}
	if err := clearConflicts(ipt, st, cfg, &rep); err != nil {
		return rep, err
	}
	rep.Added, err = Install(ipt, cfg)
	return rep, err
}

// clearConflicts deletes what Install cannot fix by adding: unwanted and
// misordered jumps first (so nothing leads into a chain being changed),
// then the contents of pptpgw chains that differ, then stray chains.
func clearConflicts(ipt IPTables, st *state, cfg Config, rep *RepairReport) error {
	want := Desired(cfg)
	var wantJumps []Rule
	for _, r := range want {
		if r.IsJump() {
			wantJumps = append(wantJumps, r)
		}
	}
	for _, k := range st.order {
		if _, name, _ := cutKey(k); ours(name) {
			continue
		}
		var got, w []Rule
		for _, r := range st.rules[k] {
			if ours(jumpTarget(r.Spec)) {
				got = append(got, r)
			}
		}
		for _, r := range wantJumps {
			if chainKey(r.Table, r.Chain) == k {
				w = append(w, r)
			}
		}
		if isSubsequence(got, w) {
			continue // at most missing: Install puts them in place
		}
		// Delete all of them: `iptables -D` takes the first of duplicates,
		// which may be the one in the right place. Install re-adds them.
		for _, r := range got {
			if err := ipt.Delete(r.Table, r.Chain, r.Spec...); err != nil && !isNotExist(err) {
				return fmt.Errorf("delete rule %s: %w", r, err)
			}
			rep.Removed = append(rep.Removed, r)
		}
	}
	known := map[string]bool{}
	for _, c := range Chains() {
		k := chainKey(c.Table, c.Name)
		known[k] = true
		if !st.chains[k] {
			continue
		}
		var w []Rule
		for _, r := range want {
			if r.Table == c.Table && r.Chain == c.Name {
				w = append(w, r)
			}
		}
		if isSubsequence(st.rules[k], w) {
			continue
		}
		if err := ipt.ClearChain(c.Table, c.Name); err != nil {
			return fmt.Errorf("flush chain %s %s: %w", c.Table, c.Name, err)
		}
		rep.Removed = append(rep.Removed, st.rules[k]...)
	}
	for _, k := range st.order {
		table, name, _ := cutKey(k)
		if !ours(name) || known[k] {
			continue
		}
		if err := ipt.ClearChain(table, name); err != nil {
			return fmt.Errorf("flush chain %s %s: %w", table, name, err)
		}
		if err := ipt.DeleteChain(table, name); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete chain %s %s: %w", table, name, err)
		}
		rep.RemovedChains = append(rep.RemovedChains, table+" "+name)
	}
	return nil
}

func cutKey(k string) (table, chain string, ok bool) { return strings.Cut(k, "\x00") }

// isSubsequence reports whether got lists some of want's rules, each at
// most as often and in want's order: then Install can add the rest in place.
func isSubsequence(got, want []Rule) bool {
	j := 0
	for _, g := range got {
		k := g.key()
		for j < len(want) && want[j].key() != k {
			j++
		}
		if j == len(want) {
			return false
		}
		j++
	}
	return true
}
