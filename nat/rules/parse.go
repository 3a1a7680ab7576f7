package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// splitLine splits one line of `iptables -S` output into arguments. It
// undoes iptables' quoting: "..." with \" and \\ escapes (u32 expressions
// and comments are printed quoted).
func splitLine(line string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case quote && c == '"':
			quote = false
		case c == '"':
			quote, inArg = true, true
		case !quote && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// joinSpec renders arguments as iptables-save does, quoting those a
// shell would split or interpret.
func joinSpec(spec []string) string {
	out := make([]string, len(spec))
	for i, a := range spec {
		if a == "" || strings.ContainsAny(a, " \t\"\\'&|<>;@$*?()[]{}#~`") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// parseRules turns `iptables -t table -S chain` output into rules,
// skipping chain declarations (-N, -P) and comment lines (iptables-nft
// adds "# Warning: iptables-legacy tables present").
func parseRules(table string, lines []string) ([]Rule, error) {
	var rs []Rule
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		args, err := splitLine(l)
		if err != nil {
			return nil, err
		}
		if len(args) < 2 {
			return nil, fmt.Errorf("short rule %q", l)
		}
		rs = append(rs, Rule{Table: table, Chain: args[1], Spec: stripCounters(args[2:])})
	}
	return rs, nil
}

// stripCounters drops "-c PKTS BYTES", which go-iptables appends when
// iptables-nft prints counters in iptables-save form.
func stripCounters(spec []string) []string {
	for i := 0; i+2 < len(spec); i++ {
		if spec[i] == "-c" {
			return append(spec[:i:i], spec[i+3:]...)
		}
	}
	return spec
}

// key is the canonical form of a rule used to compare what we want with
// what iptables prints: the u32 expression and the mark are numbers
// iptables rewrites in hex, so they are normalised on both sides.
func (r Rule) key() string {
	spec := make([]string, len(r.Spec))
	copy(spec, r.Spec)
	for i := 0; i+1 < len(spec); i++ {
		switch spec[i] {
		case "--u32":
			spec[i+1] = canonNumbers(spec[i+1])
		case "--mark":
			spec[i+1] = canonNumbers(spec[i+1])
		}
	}
	return r.Table + "\x00" + r.Chain + "\x00" + strings.Join(spec, "\x00")
}

var numberRE = regexp.MustCompile(`0[xX][0-9a-fA-F]+|[0-9]+`)

// canonNumbers rewrites every number in s as lower-case hex, the way
// libxt_u32 and libxt_mark print them ("0>>22&0x3C" -> "0x0>>0x16&0x3c").
func canonNumbers(s string) string {
	return numberRE.ReplaceAllStringFunc(s, func(n string) string {
		v, err := strconv.ParseUint(n, 0, 64)
		if err != nil {
			return strings.ToLower(n)
		}
		return "0x" + strconv.FormatUint(v, 16)
	})
}

// jumpTarget returns the chain a rule jumps to with -j (or -g), or "".
func jumpTarget(spec []string) string {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "-j" || spec[i] == "-g" {
			return spec[i+1]
		}
	}
	return ""
}
