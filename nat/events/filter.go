package events

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Filter selects events: each part left empty matches everything, a part
// set must match (any of its values). The admin socket evaluates it
// server-side, so a reader interested in one host is not flooded.
type Filter struct {
	Inside []netip.Prefix // the inside address is in one of these
	Peer   []netip.Prefix // the peer (outside) address is in one of these
	Types  []Type
}

// Match reports whether e passes f; a Lost event always does.
func (f *Filter) Match(e *Event) bool {
	if e.Type == Lost {
		return true
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) {
		return false
	}
	return InPrefixes(f.Inside, e.Inside().IP()) && InPrefixes(f.Peer, e.Peer().IP())
}

// InPrefixes reports whether a is in one of ps; an empty ps holds every
// address.
func InPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes reads a comma-separated list of IPv4 CIDRs; a bare
// address is its /32.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		p, err := parsePrefix(w)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(w string) (netip.Prefix, error) {
	if !strings.Contains(w, "/") {
		a, err := netip.ParseAddr(w)
		if err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or CIDR", w)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(w)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or CIDR", w)
	}
	return p.Masked(), nil
}

// JoinPrefixes is the comma-separated form ParsePrefixes reads.
func JoinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Query is f as GET /v1/events's query parameters (inside, peer, type).
func (f *Filter) Query() url.Values {
	q := url.Values{}
	if len(f.Inside) > 0 {
		q.Set("inside", JoinPrefixes(f.Inside))
	}
	if len(f.Peer) > 0 {
		q.Set("peer", JoinPrefixes(f.Peer))
	}
	if len(f.Types) > 0 {
		q.Set("type", joinTypes(f.Types))
	}
	return q
}

// ParseQuery reads a Filter from query parameters; an unknown parameter
// is an error (a typo must not silently match everything).
func ParseQuery(q url.Values) (Filter, error) {
	var f Filter
	var err error
	for k, vs := range q {
		v := strings.Join(vs, ",")
		switch k {
		case "inside":
			f.Inside, err = ParsePrefixes(v)
		case "peer":
			f.Peer, err = ParsePrefixes(v)
		case "type":
			f.Types, err = ParseTypes(v)
		default:
			err = fmt.Errorf("unknown parameter %q (want inside, peer, type)", k)
		}
		if err != nil {
			return Filter{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	return f, nil
}
