package rules

import (
	"fmt"
	"slices"
	"strings"
)

// fakeErr mimics go-iptables' *iptables.Error for missing rules/chains.
type fakeErr struct {
	msg      string
	notExist bool
}

func (e *fakeErr) Error() string    { return e.msg }
func (e *fakeErr) IsNotExist() bool { return e.notExist }
func errNotExist(f string, a ...any) error {
	return &fakeErr{msg: fmt.Sprintf(f, a...), notExist: true}
}

type fakeChain struct {
	name    string
	builtin bool
	rules   [][]string
}

// fakeIPT is an in-memory iptables with the raw and mangle tables. It
// prints rules the way iptables does (u32 and mark in hex, quoted), so the
// canonicalisation in the package is exercised.
type fakeIPT struct {
	tables map[string][]*fakeChain
	calls  []string
}

func newFake() *fakeIPT {
	f := &fakeIPT{tables: map[string][]*fakeChain{}}
	for t, cs := range map[string][]string{
		TableRaw:    {"PREROUTING", "OUTPUT"},
		TableMangle: {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	} {
		for _, c := range cs {
			f.tables[t] = append(f.tables[t], &fakeChain{name: c, builtin: true})
		}
	}
	return f
}

func (f *fakeIPT) chain(table, chain string) *fakeChain {
	for _, c := range f.tables[table] {
		if c.name == chain {
			return c
		}
	}
	return nil
}

func (f *fakeIPT) ListChains(table string) ([]string, error) {
	var out []string
	for _, c := range f.tables[table] {
		if c.builtin {
			out = append(out, c.name)
		}
	}
	for _, c := range f.tables[table] {
		if !c.builtin {
			out = append(out, c.name)
		}
	}
	return out, nil
}

// render prints a spec as iptables -S would.
func render(spec []string) string {
	s := slices.Clone(spec)
	for i := 0; i+1 < len(s); i++ {
		if s[i] == "--u32" || s[i] == "--mark" {
			s[i+1] = canonNumbers(s[i+1])
		}
	}
	return joinSpec(s)
}

func (f *fakeIPT) List(table, chain string) ([]string, error) {
	c := f.chain(table, chain)
	if c == nil {
		return nil, errNotExist("iptables: No chain/target/match by that name.")
	}
	out := []string{"-N " + chain}
	if c.builtin {
		out = []string{"-P " + chain + " ACCEPT"}
	}
	for _, r := range c.rules {
		out = append(out, "-A "+chain+" "+render(r))
	}
	return out, nil
}

func (f *fakeIPT) NewChain(table, chain string) error {
	f.calls = append(f.calls, "-N "+table+" "+chain)
	if f.chain(table, chain) != nil {
		return fmt.Errorf("iptables: Chain already exists")
	}
	f.tables[table] = append(f.tables[table], &fakeChain{name: chain})
	return nil
}

func (f *fakeIPT) referenced(table, chain string) bool {
	for _, c := range f.tables[table] {
		for _, r := range c.rules {
			if jumpTarget(r) == chain {
				return true
			}
		}
	}
	return false
}

func (f *fakeIPT) DeleteChain(table, chain string) error {
	f.calls = append(f.calls, "-X "+table+" "+chain)
	c := f.chain(table, chain)
	switch {
	case c == nil:
		return errNotExist("iptables: No chain/target/match by that name.")
	case len(c.rules) > 0 || f.referenced(table, chain):
		return fmt.Errorf("iptables: Directory not empty")
	}
	f.tables[table] = slices.DeleteFunc(f.tables[table], func(x *fakeChain) bool { return x == c })
	return nil
}

func (f *fakeIPT) ClearChain(table, chain string) error {
	f.calls = append(f.calls, "-F "+table+" "+chain)
	if c := f.chain(table, chain); c != nil {
		c.rules = nil
		return nil
	}
	return f.NewChain(table, chain)
}

func (f *fakeIPT) Insert(table, chain string, pos int, spec ...string) error {
	f.calls = append(f.calls, fmt.Sprintf("-I %s %s %d %s", table, chain, pos, strings.Join(spec, " ")))
	c := f.chain(table, chain)
	if c == nil {
		return errNotExist("iptables: No chain/target/match by that name.")
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return fmt.Errorf("iptables: Index of insertion too big")
	}
	c.rules = slices.Insert(c.rules, pos-1, slices.Clone(spec))
	return nil
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	f.calls = append(f.calls, fmt.Sprintf("-A %s %s %s", table, chain, strings.Join(spec, " ")))
	c := f.chain(table, chain)
	if c == nil {
		return errNotExist("iptables: No chain/target/match by that name.")
	}
	c.rules = append(c.rules, slices.Clone(spec))
	return nil
}

func (f *fakeIPT) Delete(table, chain string, spec ...string) error {
	f.calls = append(f.calls, fmt.Sprintf("-D %s %s %s", table, chain, strings.Join(spec, " ")))
	c := f.chain(table, chain)
	if c == nil {
		return errNotExist("iptables: No chain/target/match by that name.")
	}
	want := Rule{table, chain, spec}.key()
	for i, r := range c.rules {
		if (Rule{table, chain, r}).key() == want {
			c.rules = slices.Delete(c.rules, i, i+1)
			return nil
		}
	}
	return errNotExist("iptables: Bad rule (does a matching rule exist in that chain?).")
}

// dump is the whole fake state as iptables-save-like text.
func (f *fakeIPT) dump() string {
	var b strings.Builder
	for _, t := range []string{TableMangle, TableRaw} {
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range f.tables[t] {
			fmt.Fprintf(&b, ":%s\n", c.name)
		}
		for _, c := range f.tables[t] {
			for _, r := range c.rules {
				fmt.Fprintf(&b, "-A %s %s\n", c.name, render(r))
			}
		}
	}
	return b.String()
}
