package config

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestPolicyOptions(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		args []string
		want Policy
	}{
		{"default", "", nil, nil, Policy{}},
		{"flags", "", nil, []string{"--require-auth", "mschapv2,eap", "--require-mppe", "128",
			"--allow-inside", "192.168.1.0/24", "--allow-inside", "10.9.9.9", "--allow-peer", "203.0.113.0/24"},
			Policy{RequireAuth: []string{"mschapv2", "eap"}, RequireMPPE: 128,
				AllowInside: prefixes("192.168.1.0/24", "10.9.9.9/32"), AllowPeer: prefixes("203.0.113.0/24")}},
		{"repeated_auth_no_duplicates", "", nil, []string{"--require-auth", "eap", "--require-auth", "eap,pap"},
			Policy{RequireAuth: []string{"eap", "pap"}}},
		{"file", "require-auth: [mschapv2]\nrequire-mppe: 56\nallow-peer:\n  - 198.51.100.0/24\n  - 203.0.113.7\n", nil, nil,
			Policy{RequireAuth: []string{"mschapv2"}, RequireMPPE: 56, AllowPeer: prefixes("198.51.100.0/24", "203.0.113.7/32")}},
		{"env_over_file", "require-auth: [pap]\nallow-inside: [10.0.0.0/8]\n", []string{"PPTPGW_REQUIRE_AUTH=chap-md5,mschapv1", "PPTPGW_ALLOW_INSIDE="}, nil,
			Policy{RequireAuth: []string{"chap-md5", "mschapv1"}}},
		{"flag_over_env", "", []string{"PPTPGW_REQUIRE_MPPE=40"}, []string{"--require-mppe", "0"}, Policy{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			c, err := Parse(CmdRun, args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, c.Policy, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("policy (-want +got):\n%s", d)
			}
		})
	}
}

func TestPolicyOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--require-auth", "chap"}, `--require-auth: "chap" is not one of pap, chap-md5, mschapv1, mschapv2, eap`},
		{[]string{"--require-auth", "mschapv2,MSCHAPV2"}, `--require-auth: "MSCHAPV2" is not one of`},
		{[]string{"--require-mppe", "64"}, `--require-mppe: "64" is not one of 0, 40, 56, 128`},
		{[]string{"--allow-inside", "10.0.0.1/8"}, `--allow-inside: "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8?)`},
		{[]string{"--allow-peer", "2001:db8::/32"}, `--allow-peer: "2001:db8::/32" is not an IPv4 CIDR`},
		{[]string{"--allow-peer", "example.com"}, `--allow-peer: "example.com" is not an IPv4 address or CIDR`},
	} {
		_, err := Parse(CmdRun, tt.args, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want prefix %q", tt.args, err, tt.want)
		}
	}
	// The policy is run's alone.
	if _, err := Parse(CmdRules, []string{"show", "--require-auth", "pap"}, nil); err == nil {
		t.Errorf("rules took --require-auth")
	}
}

// The policy is reloaded by SIGHUP, without a restart.
func TestPolicyReload(t *testing.T) {
	p := writeFile(t, "require-auth: [pap]\n")
	c, err := Parse(CmdRun, []string{"--config", p, "--allow-inside", "10.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("require-auth: [mschapv2, eap]\nrequire-mppe: 128\nallow-inside: [192.168.0.0/16]\nallow-peer: [203.0.113.0/24]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next, restart, err := c.Reload(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(restart) != 0 {
		t.Errorf("policy options need a restart: %v", restart)
	}
	want := Policy{RequireAuth: []string{"mschapv2", "eap"}, RequireMPPE: 128,
		AllowInside: prefixes("10.0.0.0/8") /* the flag still wins */, AllowPeer: prefixes("203.0.113.0/24")}
	if d := cmp.Diff(want, next.Policy, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("reloaded policy (-want +got):\n%s", d)
	}
	if len(c.RequireAuth) != 1 {
		t.Errorf("Reload changed the old config: %v", c.RequireAuth)
	}
}
