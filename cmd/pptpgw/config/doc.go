package config

import "slices"

// OptionDoc describes one option for documents generated from the option table: the man page,
// the shell completions and OpenWrt's UCI option list (cmd/pptpgw/docgen).
type OptionDoc struct {
	Name       string   // flag name and YAML key, without dashes
	Arg        string   // placeholder ("N", "auto|bpf|kernel|queue"); "" for a boolean
	Usage      string   // one line, as in --help
	Default    string   // as a user would write it; "" for none (and for false)
	Env        string   // PPTPGW_ variable; "" when the environment cannot set it
	Commands   []string // subcommands that take it
	Flag       bool     // settable as --Name
	File       bool     // settable as a YAML key
	List       bool     // repeatable / a YAML list
	Reloadable bool     // SIGHUP puts a new value in force
}

// Options returns the option table, in usage order, for documentation generators.
func Options() []OptionDoc {
	def := Default()
	out := make([]OptionDoc, 0, len(options))
	for _, o := range options {
		d := OptionDoc{Name: o.name, Arg: o.arg, Usage: o.usage, Commands: slices.Clone(o.cmds),
			Flag: o.from&fromFlag != 0, File: o.from&fromFile != 0, List: o.list, Reloadable: o.reloadable}
		if v := o.get(&def); v != "false" {
			d.Default = v
		}
		if o.from&fromEnv != 0 {
			d.Env = envName(o.name)
		}
		out = append(out, d)
	}
	return out
}

// choiceLists are the values of the options whose placeholder does not list them; parse checks
// the same sets (a test keeps them equal).
var choiceLists = map[string][]string{
	"log-level":    {"debug", "info", "warn", "error"},
	"require-auth": AuthNames,
	"require-mppe": {"0", "40", "56", "128"},
}

// Choices returns the few values option name takes when its placeholder does not show them,
// for shell completion; nil when it takes free text.
func Choices(name string) []string { return slices.Clone(choiceLists[name]) }
