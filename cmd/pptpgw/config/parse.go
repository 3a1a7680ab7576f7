package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// setting is one value from one source, with the name of that source for error messages.
type setting struct {
	opt   *option
	value string
	src   string // "--queue", "PPTPGW_QUEUE", `config file x.yaml: key "queue"`
}

// Parse returns the configuration of subcommand (one of the Cmd constants) from its
// command-line arguments (without the program and subcommand names) and the environment
// (os.Environ() form), reading the config file the flags or PPTPGW_CONFIG name.
//
// Precedence is defaults < file < environment < flags. Within one source a list option's values
// accumulate; a source that sets a list replaces what a lower source set. Options of another
// subcommand are ignored in the file and the environment (run and rules share both), but an
// unknown key or PPTPGW_ variable is an error. A -h/--help argument returns an error that
// errors.Is flag.ErrHelp; main prints Usage. Every other error names its source and is meant to
// be printed as one line, exit status 2.
func Parse(subcommand string, args, environ []string) (*Config, error) {
	if !slices.Contains(Subcommands(), subcommand) {
		return nil, fmt.Errorf("unknown subcommand %q", subcommand)
	}
	flags, positional, err := parseFlags(subcommand, args)
	if err != nil {
		return nil, err
	}
	env, err := parseEnv(subcommand, environ)
	if err != nil {
		return nil, err
	}

	c := Default()
	c.Subcommand = subcommand
	c.args = slices.Clone(args)
	c.sources = map[string]string{}

	// The file's path itself comes from the environment or a flag, never from the file.
	for _, s := range append(slices.Clone(env), flags...) {
		if s.opt.name == "config" {
			c.ConfigFile = s.value
		}
	}
	if c.ConfigFile != "" {
		file, err := readFile(subcommand, c.ConfigFile)
		if err != nil {
			return nil, err
		}
		if err := c.apply(file); err != nil {
			return nil, err
		}
	}
	if err := c.apply(env); err != nil {
		return nil, err
	}
	if err := c.apply(flags); err != nil {
		return nil, err
	}
	if err := c.setPositional(positional); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Subcommands lists the subcommands Parse knows.
func Subcommands() []string {
	return []string{CmdRun, CmdRules, CmdCalls, CmdStats, CmdHealth, CmdCheck, CmdEvents, CmdVersion}
}

// apply sets one source's settings in order. The first setting of a list option in a source
// empties the list, so the source replaces rather than extends a lower one.
func (c *Config) apply(settings []setting) error {
	reset := map[*option]bool{}
	for _, s := range settings {
		if s.opt.list {
			if !reset[s.opt] {
				s.opt.reset(c)
				reset[s.opt] = true
			}
			for _, v := range splitList(s.value) {
				if err := s.opt.set(c, v); err != nil {
					return fmt.Errorf("%s: %w", s.src, err)
				}
			}
		} else if err := s.opt.set(c, s.value); err != nil {
			return fmt.Errorf("%s: %w", s.src, err)
		}
		c.sources[s.opt.name] = s.src
	}
	return nil
}

// validate checks what no single value can: the queue range as a whole.
func (c *Config) validate() error {
	if last := int(c.Queue) + 2*c.Queues - 1; last > 0xFFFF {
		return fmt.Errorf("%s: queue %d with %d queues needs queues up to %d, above 65535 (control and GRE use %d each)",
			c.source("queue"), c.Queue, c.Queues, last, c.Queues)
	}
	return nil
}

// setPositional takes the positional arguments: the action of rules, none elsewhere.
func (c *Config) setPositional(args []string) error {
	if c.Subcommand != CmdRules {
		if len(args) > 0 {
			return fmt.Errorf("%s: unexpected argument %q", c.Subcommand, args[0])
		}
		return nil
	}
	switch len(args) {
	case 0:
		return errors.New("rules: missing action (install, remove or show)")
	case 1:
		a, err := parseEnum(args[0], RulesInstall, RulesRemove, RulesShow)
		if err != nil {
			return fmt.Errorf("rules: action %w", err)
		}
		c.Action = a
		return nil
	default:
		return fmt.Errorf("rules: unexpected argument %q after %s", args[1], args[0])
	}
}

// source names where option name's value came from, "default" if nowhere.
func (c *Config) source(name string) string {
	if s, ok := c.sources[name]; ok {
		return s
	}
	return "default " + name
}

// collector is the flag.Value of every option while flags are parsed: it only records the text,
// so that flags can be applied after the file and the environment and report their own errors.
type collector struct {
	opt *option
	out *[]setting
}

func (v collector) String() string   { return "" }
func (v collector) IsBoolFlag() bool { return v.opt.arg == "" }
func (v collector) Set(s string) error {
	*v.out = append(*v.out, setting{opt: v.opt, value: s, src: "--" + v.opt.name})
	return nil
}

// parseFlags parses args with the standard flag package, allowing flags after positional
// arguments (`rules install --queue 3`), and returns the settings in order plus the positional
// arguments. "--" ends the flags.
func parseFlags(subcommand string, args []string) ([]setting, []string, error) {
	var settings []setting
	fs := flag.NewFlagSet(subcommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, o := range options {
		if o.takes(subcommand) && o.from&fromFlag != 0 {
			fs.Var(collector{opt: o, out: &settings}, o.name, o.usage)
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, flagError(subcommand, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return settings, positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return settings, append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// flagError rewrites the flag package's messages into the "--name: problem" form.
func flagError(subcommand string, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		if lookup(name) != nil {
			return fmt.Errorf("--%s: not an option of %s", name, subcommand)
		}
		return fmt.Errorf("--%s: unknown flag", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("--%s: needs a value", strings.TrimLeft(name, "-"))
	}
	if arg, ok := strings.CutPrefix(msg, "bad flag syntax: "); ok {
		return fmt.Errorf("%s: bad flag syntax", arg)
	}
	return err
}
