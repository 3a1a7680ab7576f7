package rules

import "strings"

// SaveText renders Desired(cfg) as `iptables-save` text: per table, the
// declarations of pptpgw's chains, the jumps into them from the built-in
// chains, then their rules. Built-in chains are not declared, so that
// `iptables-restore --noflush` adds pptpgw's rules without touching their
// policies or anyone else's rules. deploy/rules.v4 is this text for the
// default configuration, kept in sync by a test.
func SaveText(cfg Config) string {
	var b strings.Builder
	b.WriteString("# pptpgw's rules (`pptpgw rules show`), for `iptables-restore --noflush`.\n")
	b.WriteString("# Generated from nat/rules.Desired; `pptpgw rules install` installs the same idempotently.\n")
	want := Desired(cfg)
	for _, table := range []string{TableRaw, TableMangle} {
		b.WriteString("*" + table + "\n")
		for _, c := range Chains() {
			if c.Table == table {
				b.WriteString(":" + c.Name + " - [0:0]\n")
			}
		}
		for _, jumps := range []bool{true, false} {
			for _, r := range want {
				if r.Table == table && r.IsJump() == jumps {
					b.WriteString("-A " + r.Chain + " " + joinSpec(r.Spec) + "\n")
				}
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}
