package check

import "github.com/pptpgw/pptpgw/nat/rules"

// Ruleset is one iptables flavour's tables as `iptables-save -c` prints
// them: rules' in-memory iptables, so that rules.Verify compares it with
// the desired rules exactly as `pptpgw run` does with the live tables.
// check only reads it.
type Ruleset = rules.Memory

// SavedRule is one "-A CHAIN ..." line and its counters.
type SavedRule = rules.SavedRule

// ParseSave reads `iptables-save` output, with or without -c.
func ParseSave(text string) (*Ruleset, error) { return rules.ParseSave(text) }
