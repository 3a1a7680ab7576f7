package docgen

import (
	"fmt"
	"strings"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

const generated = "Generated from pptpgw's option table by `go generate ./cmd/pptpgw`; do not edit."

// Bash returns the bash completion script (function _pptpgw).
func Bash(p Program) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	names := make([]string, len(p.Commands))
	for i, c := range p.Commands {
		names[i] = c.Name
	}
	w("# bash completion for pptpgw(8). %s", generated)
	w("_pptpgw() {")
	w("\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} opts= words=")
	w("\tCOMPREPLY=()")
	w("\tif [ \"$COMP_CWORD\" -eq 1 ]; then")
	w("\t\tmapfile -t COMPREPLY < <(compgen -W %q -- \"$cur\")", strings.Join(names, " "))
	w("\t\treturn")
	w("\tfi")
	w("\tcase ${COMP_WORDS[1]} in")
	for _, c := range p.Commands {
		w("\t%s) opts=%q words=%q ;;", c.Name, strings.Join(flagNames(&c), " "), strings.Join(c.Words, " "))
	}
	w("\t*) return ;;")
	w("\tesac")
	bashValues(w, p.allFlags())
	w("\tif [[ $cur == -* ]]; then")
	w("\t\tmapfile -t COMPREPLY < <(compgen -W \"$opts\" -- \"$cur\")")
	w("\telse")
	w("\t\tmapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")")
	w("\tfi")
	w("}")
	w("complete -F _pptpgw pptpgw")
	return []byte(b.String())
}

// bashValues writes the case on the previous word that completes a flag's value.
func bashValues(w func(string, ...any), flags []config.OptionDoc) {
	groups := map[string][]string{} // shell action -> flags
	var order []string
	for _, f := range flags {
		var action string
		switch kindOf(f) {
		case argNone:
			continue
		case argWords:
			action = fmt.Sprintf("mapfile -t COMPREPLY < <(compgen -W %q -- \"$cur\")", strings.Join(choices(f), " "))
		case argFile:
			action = `mapfile -t COMPREPLY < <(compgen -f -- "$cur")`
		case argIface:
			action = `mapfile -t COMPREPLY < <(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")`
		case argGroup:
			action = `mapfile -t COMPREPLY < <(compgen -g -- "$cur")`
		default:
			action = ":" // a value nobody can guess: offer nothing rather than flags
		}
		if _, ok := groups[action]; !ok {
			order = append(order, action)
		}
		groups[action] = append(groups[action], "--"+f.Name)
	}
	w("\tcase $prev in")
	for _, action := range order {
		w("\t%s)\n\t\t%s\n\t\treturn ;;", strings.Join(groups[action], "|"), action)
	}
	w("\tesac")
}

// zshQuote escapes text for an _arguments spec inside single quotes.
func zshQuote(s string) string {
	s = strings.ReplaceAll(s, `'`, `'\''`)
	s = strings.ReplaceAll(s, `[`, `\[`)
	s = strings.ReplaceAll(s, `]`, `\]`)
	return strings.ReplaceAll(s, `:`, `\:`)
}

// Zsh returns the zsh completion function file _pptpgw.
func Zsh(p Program) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("#compdef pptpgw")
	w("# zsh completion for pptpgw(8). %s", generated)
	w("_pptpgw() {")
	w("\tlocal -a commands")
	w("\tcommands=(")
	for _, c := range p.Commands {
		w("\t\t'%s:%s'", c.Name, zshQuote(c.Summary))
	}
	w("\t)")
	w("\tif (( CURRENT == 2 )); then")
	w("\t\t_describe -t commands 'pptpgw command' commands")
	w("\t\treturn")
	w("\tfi")
	w("\tcase ${words[2]} in")
	for _, c := range p.Commands {
		w("\t%s)", c.Name)
		w("\t\t_arguments -s \\")
		w("\t\t\t'1: :(%s)' \\", c.Name)
		for _, f := range c.Flags {
			w("\t\t\t%s \\", zshSpec(f))
		}
		if len(c.Words) > 0 {
			w("\t\t\t'2:action:(%s)' \\", strings.Join(c.Words, " "))
		}
		w("\t\t\t&& return 0")
		w("\t\t;;")
	}
	w("\tesac")
	w("\treturn 1")
	w("}")
	w("_pptpgw \"$@\"")
	return []byte(b.String())
}

// zshSpec is one _arguments option spec: repeatable lists get a leading *.
func zshSpec(f config.OptionDoc) string {
	desc := "[" + zshQuote(f.Usage) + "]"
	if f.Arg == "" {
		return "'--" + f.Name + desc + "'"
	}
	var action string
	switch kindOf(f) {
	case argWords:
		action = "(" + strings.Join(choices(f), " ") + ")"
	case argFile:
		action = "_files"
	case argIface:
		action = "_net_interfaces"
	case argGroup:
		action = "_groups"
	default:
		action = " "
	}
	star := ""
	if f.List {
		star = "*"
	}
	return "'" + star + "--" + f.Name + "=" + desc + ":" + zshQuote(strings.ToLower(f.Name)) + ":" + action + "'"
}
