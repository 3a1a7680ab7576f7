package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Report is what one Install added, so that `run --install-rules` can
// remove at exit exactly that and leave persistent rules alone.
type Report struct {
	// Chains are the chains Install created.
	Chains []Chain
	// Rules are the rules Install added, in the order it added them.
	Rules []Rule
}

// Empty reports whether Install added nothing.
func (r Report) Empty() bool { return len(r.Chains) == 0 && len(r.Rules) == 0 }

// Install adds whatever of Desired(cfg) is missing, at its place, and
// returns what it added. It is idempotent: with everything in place it
// adds nothing. When pptpgw's chains or jumps hold something cfg does not
// want (another queue number, a duplicate jump), Install changes nothing
// and returns an error wrapping ErrMismatch that names the differences;
// Remove then Install replaces them. After a nil error, Verify is empty.
func Install(ipt IPTables, cfg Config) (Report, error) {
	st, d, err := inspect(ipt, cfg)
	if err != nil {
		return Report{}, err
	}
	if d.conflicts() {
		return Report{}, fmt.Errorf("%w: %s", ErrMismatch, strings.Join(d.lines(), "; "))
	}
	return add(ipt, cfg, st, d)
}

// inspect validates cfg, reads the installed rules and compares them with
// what cfg wants: the first step of Install and Repair alike.
func inspect(ipt IPTables, cfg Config) (*state, *diff, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	st, err := readState(ipt)
	if err != nil {
		return nil, nil, err
	}
	return st, compare(st, cfg), nil
}

// add puts in what d says is missing from st, which it updates.
func add(ipt IPTables, cfg Config, st *state, d *diff) (Report, error) {
	var (
		rep Report
		err error
	)
	for _, c := range d.missingChains {
		if err := ipt.NewChain(c.Table, c.Name); err != nil {
			return rep, fmt.Errorf("create chain %s %s: %w", c.Table, c.Name, err)
		}
		rep.Chains = append(rep.Chains, c)
		st.rules[chainKey(c.Table, c.Name)] = nil
	}
	missing := map[string]int{}
	for _, r := range d.missing {
		missing[r.key()]++
	}
	for _, r := range Desired(cfg) {
		if missing[r.key()] == 0 {
			continue
		}
		missing[r.key()]--
		k := chainKey(r.Table, r.Chain)
		pos := insertPos(st.rules[k], r, cfg)
		if pos > len(st.rules[k]) {
			err = ipt.Append(r.Table, r.Chain, r.Spec...)
		} else {
			err = ipt.Insert(r.Table, r.Chain, pos+1, r.Spec...)
		}
		if err != nil {
			return rep, fmt.Errorf("add rule %s: %w", r, err)
		}
		rs := st.rules[k]
		pos = min(pos, len(rs))
		st.rules[k] = append(rs[:pos:pos], append([]Rule{r}, rs[pos:]...)...)
		rep.Rules = append(rep.Rules, r)
	}
	return rep, nil
}

// insertPos is the 0-based index where r goes in a chain currently
// holding cur, or len(cur)+1 to append. In pptpgw's chains, cur is a
// subsequence of the desired rules, so r goes after the desired rules
// before it. In a built-in chain, a jump goes just before the first later
// pptpgw jump already there (NOTRACK before GRE-IN), else at the end: the
// operator's own rules keep running first.
func insertPos(cur []Rule, r Rule, cfg Config) int {
	var want []Rule
	for _, w := range Desired(cfg) {
		if w.Table == r.Table && w.Chain == r.Chain {
			want = append(want, w)
		}
	}
	idx := 0
	for i, w := range want {
		if w.key() == r.key() {
			idx = i
			break
		}
	}
	later := map[string]bool{}
	for _, w := range want[idx+1:] {
		later[w.key()] = true
	}
	for i, c := range cur {
		if later[c.key()] {
			return i
		}
	}
	return len(cur) + 1
}

// Undo removes what one Install added, most recent first: its rules, then
// the chains it created if nothing else was put in them since.
// Rules already gone are skipped, so Undo after Remove is harmless.
func Undo(ipt IPTables, rep Report) error {
	var errs []error
	for i := len(rep.Rules) - 1; i >= 0; i-- {
		r := rep.Rules[i]
		if err := ipt.Delete(r.Table, r.Chain, r.Spec...); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("delete rule %s: %w", r, err))
		}
	}
	for i := len(rep.Chains) - 1; i >= 0; i-- {
		c := rep.Chains[i]
		lines, err := ipt.List(c.Table, c.Name)
		if err != nil {
			if !isNotExist(err) {
				errs = append(errs, fmt.Errorf("list chain %s %s: %w", c.Table, c.Name, err))
			}
			continue
		}
		if rs, _ := parseRules(c.Table, lines); len(rs) > 0 {
			continue // someone added rules since: not only ours any more
		}
		if err := ipt.DeleteChain(c.Table, c.Name); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("delete chain %s %s: %w", c.Table, c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes every jump into a pptpgw chain (from any chain, whatever
// its match) and every chain named PPTPGW-* in the raw and mangle tables,
// whatever configuration installed them. It is idempotent.
func Remove(ipt IPTables) error {
	st, err := readState(ipt)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range st.order {
		if _, name, _ := strings.Cut(k, "\x00"); ours(name) {
			continue
		}
		for _, r := range st.rules[k] {
			if !ours(jumpTarget(r.Spec)) {
				continue
			}
			if err := ipt.Delete(r.Table, r.Chain, r.Spec...); err != nil && !isNotExist(err) {
				errs = append(errs, fmt.Errorf("delete rule %s: %w", r, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // a chain still referenced cannot be deleted anyway
	}
	// Flush every pptpgw chain before deleting any: one may jump to another.
	var mine [][2]string
	for _, k := range st.order {
		if table, name, _ := strings.Cut(k, "\x00"); ours(name) {
			mine = append(mine, [2]string{table, name})
		}
	}
	for _, c := range mine {
		if err := ipt.ClearChain(c[0], c[1]); err != nil {
			errs = append(errs, fmt.Errorf("flush chain %s %s: %w", c[0], c[1], err))
		}
	}
	for _, c := range mine {
		if err := ipt.DeleteChain(c[0], c[1]); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("delete chain %s %s: %w", c[0], c[1], err))
		}
	}
	return errors.Join(errs...)
}

// isNotExist recognises go-iptables' "no such rule/chain" errors.
func isNotExist(err error) bool {
	var ne interface{ IsNotExist() bool }
	return errors.As(err, &ne) && ne.IsNotExist()
}
