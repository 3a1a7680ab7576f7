package config

import (
	"fmt"
	"strings"
)

// Reload re-reads the config file and the environment for SIGHUP, re-applying c's original
// command-line arguments so that flags still win. It returns a copy of c whose Reloadable part
// (limits, timeouts, log level) is the new one and everything else is c's, plus the names of the
// other options whose value changed and so need a restart to take effect (for main to log).
// On error (a file now broken, say) nothing changes and c stays in force.
func (c *Config) Reload(environ []string) (next *Config, needRestart []string, err error) {
	fresh, err := Parse(c.Subcommand, c.args, environ)
	if err != nil {
		return nil, nil, fmt.Errorf("reload: %w", err)
	}
	n := *c
	n.Reloadable = fresh.Reloadable
	n.Policy = fresh.Policy
	n.sources = make(map[string]string, len(c.sources))
	for name, src := range c.sources {
		n.sources[name] = src
	}
	for _, name := range Diff(c, fresh) {
		o := lookup(name)
		if o.reloadable {
			if src, ok := fresh.sources[name]; ok {
				n.sources[name] = src
			} else {
				delete(n.sources, name)
			}
			continue
		}
		needRestart = append(needRestart, name)
	}
	return &n, needRestart, nil
}

// Diff returns the names of the options of a's subcommand whose values differ between a and b,
// in table order.
func Diff(a, b *Config) []string {
	var names []string
	for _, o := range options {
		if o.takes(a.Subcommand) && o.get(a) != o.get(b) {
			names = append(names, o.name)
		}
	}
	return names
}

// Setting is one effective option value and where it came from: "default", "--name",
// "PPTPGW_NAME" or `config file PATH: key "name"`.
type Setting struct {
	Name, Value, Source string
}

// Effective lists every option of c's subcommand with its value and source, for the start-up
// log and for operators asking "where did this value come from".
func (c *Config) Effective() []Setting {
	var out []Setting
	for _, o := range options {
		if !o.takes(c.Subcommand) {
			continue
		}
		src, ok := c.sources[o.name]
		if !ok {
			src = "default"
		}
		out = append(out, Setting{Name: o.name, Value: o.get(c), Source: src})
	}
	return out
}

// Usage returns the option lines of subcommand for --help, with defaults.
func Usage(subcommand string) string {
	def := Default()
	var b strings.Builder
	for _, o := range options {
		if !o.takes(subcommand) || o.from&fromFlag == 0 {
			continue
		}
		left := "--" + o.name
		if o.arg != "" {
			left += " " + o.arg
		}
		line := fmt.Sprintf("  %-34s %s", left, o.usage)
		if d := o.get(&def); d != "" && d != "false" {
			line += " (default " + d + ")"
		}
		if o.from&fromEnv != 0 {
			line += " [" + envName(o.name) + "]"
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
