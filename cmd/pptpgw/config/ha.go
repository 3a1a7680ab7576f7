package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// HA is the replication of a gateway pair (nat/ha): off without --ha-etcd.
type HA struct {
	Etcd     []string      // --ha-etcd: client URLs of the etcd members
	Node     string        // --ha-node: this node's name ("" the host name)
	Prefix   string        // --ha-prefix
	CA       string        // --ha-etcd-ca
	Cert     string        // --ha-etcd-cert
	Key      string        // --ha-etcd-key
	LeaseTTL time.Duration // --ha-lease
}

// DefaultHAPrefix and DefaultHALease are nat/ha's defaults.
const (
	DefaultHAPrefix = "/pptpgw/"
	DefaultHALease  = 30 * time.Second
)

var (
	optHAEtcd = &option{name: "ha-etcd", arg: "URL", usage: "etcd member(s) replicating the call table of a gateway pair (repeatable or comma-separated)", cmds: allRun, from: fromAll, list: true,
		set: func(c *Config, v string) error {
			for _, s := range strings.Split(v, ",") {
				u, err := parseEtcdURL(strings.TrimSpace(s))
				if err != nil {
					return err
				}
				if !slices.Contains(c.HA.Etcd, u) {
					c.HA.Etcd = append(c.HA.Etcd, u)
				}
			}
			return nil
		},
		reset: func(c *Config) { c.HA.Etcd = nil },
		get:   func(c *Config) string { return strings.Join(c.HA.Etcd, ",") }}
	optHANode = &option{name: "ha-node", arg: "NAME", usage: "this gateway's name in the pair (default: the host name)", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) error {
			if strings.ContainsAny(v, "/ \t") {
				return fmt.Errorf("%q: want a name without '/' or spaces", v)
			}
			c.HA.Node = v
			return nil
		},
		get: func(c *Config) string { return c.HA.Node }}
	optHAPrefix = &option{name: "ha-prefix", arg: "PATH", usage: "etcd key prefix of the pair's records", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) error {
			if !strings.HasPrefix(v, "/") || !strings.HasSuffix(v, "/") {
				return fmt.Errorf("%q: want a prefix starting and ending with '/'", v)
			}
			c.HA.Prefix = v
			return nil
		},
		get: func(c *Config) string { return c.HA.Prefix }}
	optHACA    = haFileOption("ha-etcd-ca", "CA certificate(s) of the etcd members (PEM)", func(c *Config) *string { return &c.HA.CA })
	optHACert  = haFileOption("ha-etcd-cert", "client certificate for etcd (PEM)", func(c *Config) *string { return &c.HA.Cert })
	optHAKey   = haFileOption("ha-etcd-key", "client key for etcd (PEM)", func(c *Config) *string { return &c.HA.Key })
	optHALease = &option{name: "ha-lease", arg: "D", usage: "how long a dead node's calls stay for its standby to take over", cmds: allRun, from: fromAll,
		set: func(c *Config, v string) (err error) {
			c.HA.LeaseTTL, err = parseDuration(v, 2*time.Second)
			return err
		},
		get: func(c *Config) string { return fmtDuration(c.HA.LeaseTTL) }}
)

func haFileOption(name, usage string, field func(*Config) *string) *option {
	return &option{name: name, arg: "FILE", usage: usage, cmds: allRun, from: fromAll,
		set: func(c *Config, v string) error { *field(c) = v; return nil },
		get: func(c *Config) string { return *field(c) }}
}

func parseEtcdURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" {
		return "", fmt.Errorf("%q: want http(s)://HOST:PORT", s)
	}
	return s, nil
}
