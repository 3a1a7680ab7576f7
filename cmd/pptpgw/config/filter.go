package config

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/pptpgw/pptpgw/nat/events"
)

// Filter is what `pptpgw calls` and `pptpgw events` select, the daemon
// evaluating it (GET /v1/calls and /v1/events query parameters). Flags
// only: a filter is a question of the moment, not configuration.
type Filter struct {
	Inside []netip.Prefix // --inside: inside address in one of these
	Peer   []netip.Prefix // --peer: peer (outside) address in one of these
	Types  []string       // --type (events): event types or groups
	States []string       // --state (calls): pending, established, closing
}

// CallStates are the values --state takes.
var CallStates = []string{"pending", "established", "closing"}

var (
	filterCommands = []string{CmdCalls, CmdEvents}

	optInside = filterPrefixOption("inside", "only calls and connections whose inside address is in this IPv4 CIDR (comma-separated or repeated)",
		func(c *Config) *[]netip.Prefix { return &c.Filter.Inside })
	optPeer = filterPrefixOption("peer", "only calls and connections whose peer (outside) address is in this IPv4 CIDR (comma-separated or repeated)",
		func(c *Config) *[]netip.Prefix { return &c.Filter.Peer })
	optType = &option{name: "type", arg: "TYPE", usage: "only events of these types, or groups conn, call, fast (comma-separated or repeated)",
		cmds: []string{CmdEvents}, from: fromFlag, list: true,
		set: func(c *Config, v string) error {
			if _, err := events.ParseTypes(v); err != nil {
				return err
			}
			if !slices.Contains(c.Filter.Types, v) {
				c.Filter.Types = append(c.Filter.Types, v)
			}
			return nil
		},
		reset: func(c *Config) { c.Filter.Types = nil },
		get:   func(c *Config) string { return strings.Join(c.Filter.Types, ",") }}
	optState = &option{name: "state", arg: "STATE", usage: "only calls in these states: " + strings.Join(CallStates, ", ") + " (comma-separated or repeated)",
		cmds: []string{CmdCalls}, from: fromFlag, list: true,
		set: func(c *Config, v string) error {
			s, err := parseEnum(v, CallStates...)
			if err == nil && !slices.Contains(c.Filter.States, s) {
				c.Filter.States = append(c.Filter.States, s)
			}
			return err
		},
		reset: func(c *Config) { c.Filter.States = nil },
		get:   func(c *Config) string { return strings.Join(c.Filter.States, ",") }}
)

// filterPrefixOption builds a repeatable CIDR filter flag of calls and
// events; a bare address is its /32.
func filterPrefixOption(name, usage string, field func(*Config) *[]netip.Prefix) *option {
	return &option{name: name, arg: "CIDR", usage: usage, cmds: filterCommands, from: fromFlag, list: true,
		set: func(c *Config, v string) error {
			ps, err := events.ParsePrefixes(v)
			for _, p := range ps {
				if !slices.Contains(*field(c), p) {
					*field(c) = append(*field(c), p)
				}
			}
			return err
		},
		reset: func(c *Config) { *field(c) = nil },
		get:   func(c *Config) string { return events.JoinPrefixes(*field(c)) }}
}
