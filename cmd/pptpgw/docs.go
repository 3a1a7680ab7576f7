package main

//go:generate go test -run ^TestGeneratedDocs$ -update .

import (
	"flag"
	"fmt"
	"strings"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
	"github.com/pptpgw/pptpgw/cmd/pptpgw/docgen"
)

// replayPlaceholders name the values of replay's flags in the generated documents.
var replayPlaceholders = map[string]string{"in": "FILE", "out": "FILE", "lan-out": "FILE", "inside": "CIDR", "public-ip": "IP"}

// docProgram describes pptpgw for docgen: the subcommands from usage, their options from the
// option table, replay's from its flag set.
func docProgram() (docgen.Program, error) {
	p := docgen.Program{Options: config.Options()}
	_, list, ok := strings.Cut(usage, "commands:\n")
	if !ok {
		return p, fmt.Errorf("usage has no commands")
	}
	list, _, _ = strings.Cut(list, "\n\n")
	for _, line := range strings.Split(list, "\n") {
		name, summary, _ := strings.Cut(strings.TrimSpace(line), " ")
		c := docgen.Command{Name: name, Summary: strings.TrimSpace(summary)}
		for _, o := range p.Options {
			if o.Flag && strings.Contains(" "+strings.Join(o.Commands, " ")+" ", " "+name+" ") {
				c.Flags = append(c.Flags, o)
			}
		}
		switch name {
		case config.CmdRules:
			c.Words = []string{config.RulesInstall, config.RulesRemove, config.RulesShow}
		case "replay":
			flags, err := replayDocs()
			if err != nil {
				return p, err
			}
			c.Flags = flags
		}
		p.Commands = append(p.Commands, c)
	}
	return p, nil
}

// replayDocs lists replay's flags the way the option table describes options.
func replayDocs() ([]config.OptionDoc, error) {
	var a replayArgs
	var out []config.OptionDoc
	var err error
	a.flagSet().VisitAll(func(f *flag.Flag) {
		d := config.OptionDoc{Name: f.Name, Usage: f.Usage, Flag: true, List: f.Name == "inside",
			Commands: []string{"replay"}}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			if d.Arg = replayPlaceholders[f.Name]; d.Arg == "" {
				err = fmt.Errorf("replay flag --%s has no placeholder in replayPlaceholders", f.Name)
			}
		}
		out = append(out, d)
	})
	return out, err
}
