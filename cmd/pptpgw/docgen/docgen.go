// Package docgen writes the documents generated from pptpgw's option table and subcommands:
// the man page pptpgw(8), bash and zsh completions, and the option list OpenWrt's init script
// turns UCI options into a configuration file with. The committed copies are kept equal to
// its output by a test (cmd/pptpgw docs_test.go; `go generate ./cmd/pptpgw` rewrites them).
package docgen

import (
	"slices"
	"strings"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// Command is one subcommand: its one-line summary, the words it takes as arguments (rules'
// actions) and its flags.
type Command struct {
	Name    string
	Summary string
	Words   []string
	Flags   []config.OptionDoc
}

// Program is what the documents describe.
type Program struct {
	Commands []Command
	// Options is the shared option table (config.Options); replay's own flags are in its Command.
	Options []config.OptionDoc
}

// Command returns the subcommand called name, or nil.
func (p *Program) Command(name string) *Command {
	for i := range p.Commands {
		if p.Commands[i].Name == name {
			return &p.Commands[i]
		}
	}
	return nil
}

// choices returns the values an option takes when they are few: from an "a|b|c" placeholder,
// else from config's list (config.Choices).
func choices(o config.OptionDoc) []string {
	if strings.Contains(o.Arg, "|") {
		return strings.Split(o.Arg, "|")
	}
	return config.Choices(o.Name)
}

// argKind says how a shell completes an option's value.
type argKind int

const (
	argNone  argKind = iota // a boolean flag
	argWords                // one of choices()
	argFile
	argIface
	argGroup
	argOther // free text: nothing to offer
)

func kindOf(o config.OptionDoc) argKind {
	switch {
	case o.Arg == "":
		return argNone
	case len(choices(o)) > 0:
		return argWords
	case o.Arg == "FILE" || o.Arg == "PATH":
		return argFile
	case o.Arg == "IFACE":
		return argIface
	case o.Name == "admin-group":
		return argGroup
	}
	return argOther
}

// flagNames returns "--name" for each flag of c, in table order.
func flagNames(c *Command) []string {
	out := make([]string, 0, len(c.Flags))
	for _, f := range c.Flags {
		out = append(out, "--"+f.Name)
	}
	return out
}

// allFlags returns every flag of every command once, in the order first met.
func (p *Program) allFlags() []config.OptionDoc {
	var out []config.OptionDoc
	seen := map[string]bool{}
	for _, c := range p.Commands {
		for _, f := range c.Flags {
			if !seen[f.Name] {
				seen[f.Name] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// UCIOptions is the option list for OpenWrt's init script: one line per option the
// configuration file can set for run or rules, "UCI NAME KIND RELOAD": its UCI name (dashes
// are underscores there), its name, KIND bool, value or list, and RELOAD reload (SIGHUP puts
// it in force) or restart.
func UCIOptions(opts []config.OptionDoc) []byte {
	var b strings.Builder
	b.WriteString("# pptpgw options for /etc/config/pptpgw.\n")
	b.WriteString("# Generated from the option table by `go generate ./cmd/pptpgw`; do not edit.\n")
	b.WriteString("# UCI NAME KIND RELOAD\n")
	for _, o := range opts {
		if !o.File || !slices.ContainsFunc(o.Commands, func(c string) bool { return c == config.CmdRun || c == config.CmdRules }) {
			continue
		}
		kind := "value"
		switch {
		case o.Arg == "":
			kind = "bool"
		case o.List:
			kind = "list"
		}
		reload := "restart"
		if o.Reloadable {
			reload = "reload"
		}
		b.WriteString(strings.ReplaceAll(o.Name, "-", "_") + " " + o.Name + " " + kind + " " + reload + "\n")
	}
	return []byte(b.String())
}
