package config

import (
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The parsers below return errors without the source; apply prefixes it ("--queue: ...").

func parseUint(v string, bitSize int) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, bitSize)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is out of range (0..%d)", v, uint64(1)<<bitSize-1)
		}
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, nil
}

func parseIntRange(v string, min, max int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	if n < min || n > max {
		return 0, fmt.Errorf("%d is out of range (%d..%d)", n, min, max)
	}
	return n, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

// parseDuration takes Go durations ("90s", "5m", "1h30m"). A bare number is refused rather than
// guessed to be seconds: "300" in a YAML file is a common slip worth a clear message.
func parseDuration(v string, min time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
			return 0, fmt.Errorf("%q has no unit (write e.g. %ss or %sm)", v, v, v)
		}
		return 0, fmt.Errorf("%q is not a duration (e.g. 90s, 5m, 1h)", v)
	}
	if d < min {
		if min == 0 {
			return 0, fmt.Errorf("%s is negative", d)
		}
		return 0, fmt.Errorf("%s is below the minimum %s", d, min)
	}
	return d, nil
}

func parseEnum(v string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

// parseMarkBit reads a hex mark ("0x10000000", or without the 0x, since the flag is documented
// as HEX) and insists on exactly one bit: the rules test it with --mark M/M and the nf_tables
// path ORs it in, so a multi-bit value would silently half-match.
func parseMarkBit(v string) (uint32, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
	n, err := strconv.ParseUint(digits, 16, 32)
	if err != nil || digits == "" {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is wider than 32 bits", v)
		}
		return 0, fmt.Errorf("%q is not a hex number (e.g. 0x10000000)", v)
	}
	if c := bits.OnesCount64(n); c != 1 {
		return 0, fmt.Errorf("%#x has %d bits set, want exactly one", n, c)
	}
	return uint32(n), nil
}

func parsePublicIP(v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", v)
	}
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("%s cannot be a public address", a)
	}
	return a, nil
}

// parseListen accepts "" (no listener) or host:port, where the host may be empty (all
// addresses).
func parseListen(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", v)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("%q has a bad port", v)
	}
	return v, nil
}

func parseNonEmpty(v string) (string, error) {
	if v == "" {
		return "", errors.New("must not be empty")
	}
	return v, nil
}

// parseIfName checks an interface name as the kernel would take it (IFNAMSIZ, no slash or
// space).
func parseIfName(v string) (string, error) {
	if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t\n:") || v == "." || v == ".." {
		return "", fmt.Errorf("%q is not an interface name", v)
	}
	return v, nil
}

// splitList splits a comma-separated list, trimming spaces and dropping empty elements, so
// "" is the empty list (a variable or flag set to "" clears what a lower source set).
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// fmtDuration prints d the way people write it: "5m" rather than Go's "5m0s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
