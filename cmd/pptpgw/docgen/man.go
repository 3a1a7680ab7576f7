package docgen

import (
	"fmt"
	"strings"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// roffText escapes text for a roff line: backslashes, and a leading dot or quote that would
// make it a request.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffFlag writes a flag name with real hyphens (\-), as man pages spell options.
func roffFlag(name string) string { return `\-\-` + strings.ReplaceAll(name, "-", `\-`) }

// ManDate is the man page's date: the last change of its hand-written text.
const ManDate = "2026-12-07"

// Man returns the man page pptpgw(8).
func Man(p Program) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w(`.\" Generated from pptpgw's option table by "go generate ./cmd/pptpgw"; do not edit.`)
	w(`.TH PPTPGW 8 %s pptpgw "System Administration"`, ManDate)
	w(".SH NAME")
	w(`pptpgw \- PPTP NAT gateway (userspace conntrack helper for PPTP)`)
	w(".SH SYNOPSIS")
	for i, c := range p.Commands {
		line := ".B pptpgw " + c.Name
		if len(c.Words) > 0 {
			line += "\n." + "I " + strings.Join(c.Words, "|")
		}
		if len(c.Flags) > 0 {
			line += "\n.RI [ options ]"
		}
		if i > 0 {
			line = ".br\n" + line
		}
		w("%s", line)
	}
	manDescription(w)
	w(".SH COMMANDS")
	for _, c := range p.Commands {
		w(".TP\n.B %s\n%s", c.Name, roffText(c.Summary))
	}
	w(".SH OPTIONS")
	w("Options of run, rules, calls, stats and check. Each can also be set as a key of the")
	w("configuration file (the flag name without its leading dashes) and as a PPTPGW_ environment variable, unless")
	w("said otherwise. A flag may be written \\fB\\-\\-name value\\fR or \\fB\\-\\-name=value\\fR;")
	w("a boolean flag alone means true, \\fB\\-\\-name=false\\fR turns it off.")
	for _, o := range p.Options {
		manOption(w, o)
	}
	if r := p.Command("replay"); r != nil && len(r.Flags) > 0 {
		w(".SS replay")
		w("replay takes only its own flags, no configuration file or environment.")
		for _, o := range r.Flags {
			o.Commands, o.Flag = nil, false // said once above
			manOption(w, o)
		}
	}
	manTail(w)
	return []byte(b.String())
}

// manOption writes one option as a tagged paragraph: usage, default, commands, sources.
func manOption(w func(string, ...any), o config.OptionDoc) {
	if o.Arg == "" {
		w(".TP\n.B %s", roffFlag(o.Name))
	} else {
		w(`.TP`+"\n"+`.BI %s " %s"`, roffFlag(o.Name), roffText(o.Arg))
	}
	w("%s.", roffText(o.Usage))
	var notes []string
	if o.Default != "" {
		notes = append(notes, "Default: "+roffText(o.Default)+".")
	}
	if len(o.Commands) > 0 {
		notes = append(notes, "Commands: "+strings.Join(o.Commands, ", ")+".")
	}
	switch {
	case o.Env != "" && !o.File:
		notes = append(notes, "Environment: "+o.Env+"; not in the configuration file.")
	case o.Env != "":
		notes = append(notes, "Environment: "+o.Env+".")
	case o.Flag && len(o.Commands) > 0 && !o.File:
		notes = append(notes, "Flag only.")
	}
	if o.Reloadable {
		notes = append(notes, "SIGHUP reloads it.")
	}
	if len(notes) > 0 {
		w("%s", strings.Join(notes, " "))
	}
}

func manDescription(w func(string, ...any)) {
	w(".SH DESCRIPTION")
	w("pptpgw lets several PPTP clients behind one NAT address reach the same server, and")
	w("servers behind it be reached. iptables rules hand it the control connection (TCP port")
	w("1723) and the enhanced GRE that carries the calls through NFQUEUE; it rewrites the Call")
	w("IDs of the control messages and maps each GRE flow back to its inside client. The GRE of")
	w("established calls is translated in the kernel where it can be (tc eBPF programs or")
	w("nf_tables maps that pptpgw fills); the rest goes through the queues.")
	w(".PP")
	w("pptpgw does not NAT the TCP connection itself: the host needs IPv4 forwarding and a")
	w("MASQUERADE or SNAT rule of its own, and the kernel's PPTP helper must not be attached.")
	w(".B pptpgw check")
	w("says what a host still lacks.")
}

func manTail(w func(string, ...any)) {
	w(".SH CONFIGURATION")
	w("Defaults, then the YAML file named by \\fB\\-\\-config\\fR (its keys are the flag names),")
	w("then PPTPGW_ environment variables (flag name upper-cased, dashes to underscores; lists")
	w("comma-separated), then flags: later wins.")
	w(".SH SIGNALS")
	w(".TP\n.B SIGHUP")
	w("re-reads the configuration file and the environment: limits, timeouts, the log level and")
	w("the policy change without losing calls; other changes are logged as needing a restart.")
	w(".TP\n.BR SIGTERM \", \" SIGINT")
	w("write the state file and exit 0.")
	w(".SH EXIT STATUS")
	w("0 on success; 1 for a failure at run time (helper attached, queue cannot be bound, rules")
	w("missing or different); 2 for a bad flag, key or value, printed as one line.")
	w(".SH FILES")
	w(".TP\n.I /etc/pptpgw/pptpgw.yaml")
	w("the configuration of the packaged service (OpenWrt: \\fI/etc/config/pptpgw\\fR).")
	w(".TP\n.I %s", config.DefaultAdminSocket)
	w("the admin socket that calls, stats and check use.")
	w(".TP\n.I %s", config.DefaultStateFile)
	w("calls kept across a restart.")
	w(".TP\n.I %s", config.DefaultBPFPinDir)
	w("the bpf path's pinned programs and maps.")
	w(".SH SEE ALSO")
	w(".BR iptables (8),")
	w(".BR iptables\\-save (8),")
	w(".BR conntrack (8),")
	w(".BR nft (8),")
	w(".BR tc (8)")
}
