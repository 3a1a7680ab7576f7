package rules

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Memory is an in-memory IPTables: tables of chains of rules, each rule
// kept as iptables prints it ("-A CHAIN spec", u32 and mark values in hex,
// quoted) with its counters. `pptpgw check` reads a saved ruleset into one
// (ParseSave), so that Verify compares it with the desired rules exactly as
// `pptpgw run` does with the live tables; tests install into one
// (NewMemory). A missing chain or rule is an error whose IsNotExist reports
// true, as go-iptables' is. The zero Memory has no tables. Not safe for
// concurrent use.
type Memory struct {
	tables map[string][]*memChain
	// Calls records every change, in iptables' words ("-A table chain
	// spec"), for tests.
	Calls []string
}

type memChain struct {
	name    string
	builtin bool // has a policy
	rules   []SavedRule
}

// SavedRule is one rule and its counters (0 unless read from
// `iptables-save -c`).
type SavedRule struct {
	Line    string // "-A CHAIN spec...", without the counters
	Packets uint64
	Bytes   uint64
}

// memErr mimics go-iptables' *iptables.Error for missing rules and chains.
type memErr struct {
	msg      string
	notExist bool
}

func (e *memErr) Error() string    { return e.msg }
func (e *memErr) IsNotExist() bool { return e.notExist }

var (
	errNoChain = &memErr{msg: "iptables: No chain/target/match by that name.", notExist: true}
	errNoRule  = &memErr{msg: "iptables: Bad rule (does a matching rule exist in that chain?).", notExist: true}
)

// NewMemory returns the raw and mangle tables of a fresh kernel: their
// built-in chains, empty.
func NewMemory() *Memory {
	m := &Memory{tables: map[string][]*memChain{}}
	for _, t := range []struct {
		table  string
		chains []string
	}{
		{TableRaw, []string{"PREROUTING", "OUTPUT"}},
		{TableMangle, []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}},
	} {
		for _, c := range t.chains {
			m.tables[t.table] = append(m.tables[t.table], &memChain{name: c, builtin: true})
		}
	}
	return m
}

// ParseSave reads `iptables-save` output, with or without -c.
func ParseSave(text string) (*Memory, error) {
	m := &Memory{tables: map[string][]*memChain{}}
	table := ""
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			m.tables[table] = []*memChain{}
		case line == "COMMIT":
			table = ""
		case table == "":
			return nil, fmt.Errorf("iptables-save line %d: %q outside a table", n+1, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("iptables-save line %d: bad chain %q", n+1, line)
			}
			m.tables[table] = append(m.tables[table], &memChain{name: f[0], builtin: f[1] != "-"})
		default:
			r, err := parseSavedRule(line)
			if err != nil {
				return nil, fmt.Errorf("iptables-save line %d: %w", n+1, err)
			}
			name := strings.Fields(r.Line)[1]
			c := m.chain(table, name)
			if c == nil {
				// iptables-restore text may leave built-in chains undeclared.
				c = &memChain{name: name, builtin: true}
				m.tables[table] = append(m.tables[table], c)
			}
			c.rules = append(c.rules, r)
		}
	}
	return m, nil
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

func (m *Memory) chain(table, chain string) *memChain {
	for _, c := range m.tables[table] {
		if c.name == chain {
			return c
		}
	}
	return nil
}

// Tables returns the names of the tables present, sorted.
func (m *Memory) Tables() []string {
	var out []string
	for t := range m.tables {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Chains returns the chains of table, in declaration order.
func (m *Memory) Chains(table string) []string {
	var out []string
	for _, c := range m.tables[table] {
		out = append(out, c.name)
	}
	return out
}

// Rules returns the rules of chain in table, in order.
func (m *Memory) Rules(table, chain string) []SavedRule {
	if c := m.chain(table, chain); c != nil {
		return c.rules
	}
	return nil
}

// RuleCount is the number of rules in every table.
func (m *Memory) RuleCount() int {
	n := 0
	for _, cs := range m.tables {
		for _, c := range cs {
			n += len(c.rules)
		}
	}
	return n
}

// ListChains lists table's chains, built-in ones first, as go-iptables does.
func (m *Memory) ListChains(table string) ([]string, error) {
	var out []string
	for _, c := range m.tables[table] {
		if c.builtin {
			out = append(out, c.name)
		}
	}
	for _, c := range m.tables[table] {
		if !c.builtin {
			out = append(out, c.name)
		}
	}
	return out, nil
}

// List prints chain the way `iptables -t table -S chain` does.
func (m *Memory) List(table, chain string) ([]string, error) {
	c := m.chain(table, chain)
	if c == nil {
		return nil, errNoChain
	}
	out := []string{"-N " + chain}
	if c.builtin {
		out = []string{"-P " + chain + " ACCEPT"}
	}
	for _, r := range c.rules {
		out = append(out, r.Line)
	}
	return out, nil
}

// ruleLine prints spec as iptables -S does in chain: u32 and mark values
// in hex, arguments quoted where a shell would split them.
func ruleLine(chain string, spec []string) string {
	s := slices.Clone(spec)
	for i := 0; i+1 < len(s); i++ {
		if s[i] == "--u32" || s[i] == "--mark" {
			s[i+1] = canonNumbers(s[i+1])
		}
	}
	return "-A " + chain + " " + joinSpec(s)
}

// specOf is the spec of a rule line, without "-A CHAIN".
func specOf(r SavedRule) []string {
	args, err := splitLine(r.Line)
	if err != nil || len(args) < 2 {
		return nil
	}
	return args[2:]
}

func (m *Memory) NewChain(table, chain string) error {
	m.Calls = append(m.Calls, "-N "+table+" "+chain)
	if m.chain(table, chain) != nil {
		return errors.New("iptables: Chain already exists")
	}
	if m.tables == nil {
		m.tables = map[string][]*memChain{}
	}
	m.tables[table] = append(m.tables[table], &memChain{name: chain})
	return nil
}

func (m *Memory) referenced(table, chain string) bool {
	for _, c := range m.tables[table] {
		for _, r := range c.rules {
			if jumpTarget(specOf(r)) == chain {
				return true
			}
		}
	}
	return false
}

func (m *Memory) DeleteChain(table, chain string) error {
	m.Calls = append(m.Calls, "-X "+table+" "+chain)
	c := m.chain(table, chain)
	switch {
	case c == nil:
		return errNoChain
	case len(c.rules) > 0 || m.referenced(table, chain):
		return errors.New("iptables: Directory not empty")
	}
	m.tables[table] = slices.DeleteFunc(m.tables[table], func(x *memChain) bool { return x == c })
	return nil
}

func (m *Memory) ClearChain(table, chain string) error {
	m.Calls = append(m.Calls, "-F "+table+" "+chain)
	if c := m.chain(table, chain); c != nil {
		c.rules = nil
		return nil
	}
	return m.NewChain(table, chain)
}

func (m *Memory) Insert(table, chain string, pos int, spec ...string) error {
	m.Calls = append(m.Calls, fmt.Sprintf("-I %s %s %d %s", table, chain, pos, strings.Join(spec, " ")))
	c := m.chain(table, chain)
	if c == nil {
		return errNoChain
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return errors.New("iptables: Index of insertion too big")
	}
	c.rules = slices.Insert(c.rules, pos-1, SavedRule{Line: ruleLine(chain, spec)})
	return nil
}

func (m *Memory) Append(table, chain string, spec ...string) error {
	m.Calls = append(m.Calls, fmt.Sprintf("-A %s %s %s", table, chain, strings.Join(spec, " ")))
	c := m.chain(table, chain)
	if c == nil {
		return errNoChain
	}
	c.rules = append(c.rules, SavedRule{Line: ruleLine(chain, spec)})
	return nil
}

func (m *Memory) Delete(table, chain string, spec ...string) error {
	m.Calls = append(m.Calls, fmt.Sprintf("-D %s %s %s", table, chain, strings.Join(spec, " ")))
	c := m.chain(table, chain)
	if c == nil {
		return errNoChain
	}
	want := Rule{table, chain, spec}.key()
	for i, r := range c.rules {
		if (Rule{table, chain, specOf(r)}).key() == want {
			c.rules = slices.Delete(c.rules, i, i+1)
			return nil
		}
	}
	return errNoRule
}

// Dump is the whole state as iptables-save-like text (chains, then
// rules, per table; mangle and raw first), for tests to compare.
func (m *Memory) Dump() string {
	tables := []string{TableMangle, TableRaw}
	for _, t := range m.Tables() {
		if t != TableMangle && t != TableRaw {
			tables = append(tables, t)
		}
	}
	var b strings.Builder
	for _, t := range tables {
		if _, ok := m.tables[t]; !ok {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range m.tables[t] {
			fmt.Fprintf(&b, ":%s\n", c.name)
		}
		for _, c := range m.tables[t] {
			for _, r := range c.rules {
				fmt.Fprintf(&b, "%s\n", r.Line)
			}
		}
	}
	return b.String()
}
