package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// AuthNames are the values --require-auth takes, weakest first.
var AuthNames = []string{"pap", "chap-md5", "mschapv1", "mschapv2", "eap"}

// Policy is what the gateway requires of the tunnels through it (README "Policy"). It is
// reloadable: SIGHUP puts a new one in force. Its zero value allows everything.
type Policy struct {
	RequireAuth []string       // --require-auth: allowed authentication protocols; empty: any
	RequireMPPE int            // --require-mppe: minimum MPPE key length (40, 56, 128); 0: not required
	AllowInside []netip.Prefix // --allow-inside: inside addresses that may use PPTP; empty: any
	AllowPeer   []netip.Prefix // --allow-peer: outside addresses they may reach; empty: any
}

// The policy's entries in the option table (options.go).
var (
	optRequireAuth = &option{name: "require-auth", arg: "LIST", usage: "allowed PPP authentication: " + strings.Join(AuthNames, ", ") + " (comma-separated or repeated); others are cleared",
		cmds: allRun, from: fromAll, list: true, reloadable: true,
		set: func(c *Config, v string) error {
			for _, a := range splitList(v) {
				if _, err := parseEnum(a, AuthNames...); err != nil {
					return err
				}
				if !slices.Contains(c.RequireAuth, a) {
					c.RequireAuth = append(c.RequireAuth, a)
				}
			}
			return nil
		},
		reset: func(c *Config) { c.RequireAuth = nil },
		get:   func(c *Config) string { return strings.Join(c.RequireAuth, ",") }}
	optRequireMPPE = &option{name: "require-mppe", arg: "BITS", usage: "require MPPE with at least this key length: 40, 56 or 128 (0: not required)",
		cmds: allRun, from: fromAll, reloadable: true,
		set: func(c *Config, v string) error {
			s, err := parseEnum(v, "0", "40", "56", "128")
			c.RequireMPPE, _ = strconv.Atoi(s)
			return err
		},
		get: func(c *Config) string {
			if c.RequireMPPE == 0 {
				return ""
			}
			return strconv.Itoa(c.RequireMPPE)
		}}
	optAllowInside = prefixOption("allow-inside", "inside IPv4 prefix whose clients may use PPTP (repeatable; default any)",
		func(c *Config) *[]netip.Prefix { return &c.AllowInside })
	optAllowPeer = prefixOption("allow-peer", "outside IPv4 prefix that may be called, or may call a PAC inside (repeatable; default any)",
		func(c *Config) *[]netip.Prefix { return &c.AllowPeer })
)

// prefixOption builds a reloadable, repeatable CIDR option of run.
func prefixOption(name, usage string, field func(*Config) *[]netip.Prefix) *option {
	return &option{name: name, arg: "CIDR", usage: usage, cmds: allRun, from: fromAll, list: true, reloadable: true,
		set: func(c *Config, v string) error {
			for _, s := range splitList(v) {
				p, err := parsePrefix4(s)
				if err != nil {
					return err
				}
				if l := field(c); !slices.Contains(*l, p) {
					*l = append(*l, p)
				}
			}
			return nil
		},
		reset: func(c *Config) { *field(c) = nil },
		get: func(c *Config) string {
			l := *field(c)
			s := make([]string, len(l))
			for i, p := range l {
				s[i] = p.String()
			}
			return strings.Join(s, ",")
		}}
}

// parsePrefix4 reads an IPv4 CIDR, or a bare address as a /32. Host bits must be zero, so a
// typo such as 10.0.0.1/8 is caught rather than silently widened.
func parsePrefix4(v string) (netip.Prefix, error) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or CIDR", v)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 CIDR", v)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", v, p.Masked())
	}
	return p, nil
}
