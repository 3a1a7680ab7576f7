package check

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Ruleset is one iptables flavour's tables as `iptables-save -c` prints
// them. It implements rules.IPTables read-only, so rules.Verify compares
// it with the desired rules exactly as `pptpgw run` does with the live
// tables.
type Ruleset struct {
	tables map[string]*savedTable
}

type savedTable struct {
	chains  []string        // in declaration order
	builtin map[string]bool // chains with a policy
	rules   map[string][]SavedRule
}

// SavedRule is one "-A CHAIN ..." line and its counters.
type SavedRule struct {
	Line    string // "-A CHAIN spec...", without the counters
	Packets uint64
	Bytes   uint64
}

// ParseSave reads `iptables-save` output, with or without -c.
func ParseSave(text string) (*Ruleset, error) {
	rs := &Ruleset{tables: map[string]*savedTable{}}
	var cur *savedTable
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			cur = &savedTable{builtin: map[string]bool{}, rules: map[string][]SavedRule{}}
			rs.tables[line[1:]] = cur
		case line == "COMMIT":
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("iptables-save line %d: %q outside a table", n+1, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("iptables-save line %d: bad chain %q", n+1, line)
			}
			cur.chains = append(cur.chains, f[0])
			cur.builtin[f[0]] = f[1] != "-"
		default:
			r, err := parseSavedRule(line)
			if err != nil {
				return nil, fmt.Errorf("iptables-save line %d: %w", n+1, err)
			}
			chain := strings.Fields(r.Line)[1]
			if _, declared := cur.builtin[chain]; !declared {
				// iptables-restore text may leave built-in chains undeclared.
				cur.chains = append(cur.chains, chain)
				cur.builtin[chain] = true
			}
			cur.rules[chain] = append(cur.rules[chain], r)
		}
	}
	return rs, nil
}

// parseSavedRule reads "[P:B] -A CHAIN ..." or "-A CHAIN ...".
func parseSavedRule(line string) (SavedRule, error) {
	var r SavedRule
	if strings.HasPrefix(line, "[") {
		counters, rest, ok := strings.Cut(line[1:], "] ")
		p, b, ok2 := strings.Cut(counters, ":")
		if !ok || !ok2 {
			return r, fmt.Errorf("bad counters in %q", line)
		}
		var err1, err2 error
		r.Packets, err1 = strconv.ParseUint(p, 10, 64)
		r.Bytes, err2 = strconv.ParseUint(b, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return r, fmt.Errorf("bad counters in %q: %w", line, err)
		}
		line = strings.TrimSpace(rest)
	}
	if !strings.HasPrefix(line, "-A ") || len(strings.Fields(line)) < 2 {
		return r, fmt.Errorf("not a rule: %q", line)
	}
	r.Line = line
	return r, nil
}

// Tables returns the names of the tables present.
func (r *Ruleset) Tables() []string {
	var out []string
	for t := range r.tables {
		out = append(out, t)
	}
	return out
}

// Rules returns the rules of chain in table, in order.
func (r *Ruleset) Rules(table, chain string) []SavedRule {
	if t := r.tables[table]; t != nil {
		return t.rules[chain]
	}
	return nil
}

// Chains returns the chains of table, in declaration order.
func (r *Ruleset) Chains(table string) []string {
	if t := r.tables[table]; t != nil {
		return t.chains
	}
	return nil
}

// RuleCount is the number of rules in every table.
func (r *Ruleset) RuleCount() int {
	n := 0
	for _, t := range r.tables {
		for _, rs := range t.rules {
			n += len(rs)
		}
	}
	return n
}

// ListChains lists table's chains, built-in ones first, as go-iptables does.
func (r *Ruleset) ListChains(table string) ([]string, error) {
	t := r.tables[table]
	if t == nil {
		return nil, nil
	}
	var out []string
	for _, c := range t.chains {
		if t.builtin[c] {
			out = append(out, c)
		}
	}
	for _, c := range t.chains {
		if !t.builtin[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// List prints chain the way `iptables -t table -S chain` does.
func (r *Ruleset) List(table, chain string) ([]string, error) {
	t := r.tables[table]
	if t == nil {
		return nil, fmt.Errorf("no table %s", table)
	}
	var out []string
	if t.builtin[chain] {
		out = append(out, "-P "+chain+" ACCEPT")
	} else {
		out = append(out, "-N "+chain)
	}
	for _, rule := range t.rules[chain] {
		out = append(out, rule.Line)
	}
	return out, nil
}

var errReadOnly = errors.New("check: the saved ruleset is read-only")

func (r *Ruleset) NewChain(table, chain string) error                            { return errReadOnly }
func (r *Ruleset) DeleteChain(table, chain string) error                         { return errReadOnly }
func (r *Ruleset) ClearChain(table, chain string) error                          { return errReadOnly }
func (r *Ruleset) Insert(table, chain string, pos int, rulespec ...string) error { return errReadOnly }
func (r *Ruleset) Append(table, chain string, rulespec ...string) error          { return errReadOnly }
func (r *Ruleset) Delete(table, chain string, rulespec ...string) error          { return errReadOnly }
