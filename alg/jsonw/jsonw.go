// Package jsonw appends JSON values to a byte slice as encoding/json writes
// them, for the encoders of hot structures (the state file): numbers without
// strconv's copy through a buffer for the small ones, strings escaped only
// when they need it.
package jsonw

import (
	"encoding/json"
	"strconv"
)

// Uint appends v in decimal.
func Uint(b []byte, v uint64) []byte {
	switch {
	case v < 10:
		return append(b, byte('0'+v))
	case v < 100:
		return append(b, byte('0'+v/10), byte('0'+v%10))
	case v < 1000:
		return append(b, byte('0'+v/100), byte('0'+v/10%10), byte('0'+v%10))
	case v < 100000:
		if v < 10000 {
			return append(b, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
		}
		return append(b, byte('0'+v/10000), byte('0'+v/1000%10), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
	}
	return strconv.AppendUint(b, v, 10)
}

// Int appends v in decimal.
func Int(b []byte, v int64) []byte {
	if v >= 0 {
		return Uint(b, uint64(v))
	}
	return strconv.AppendInt(b, v, 10)
}

// Bool appends true or false.
func Bool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// String appends s as a JSON string: as is when it is printable ASCII
// without a character encoding/json escapes, else by encoding/json itself
// (rare: a node's name with such a character).
func String(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

// IPv4 appends a as netip.Addr.String writes an IPv4 address.
func IPv4(b []byte, a [4]byte) []byte {
	b = Uint(b, uint64(a[0]))
	b = Uint(append(b, '.'), uint64(a[1]))
	b = Uint(append(b, '.'), uint64(a[2]))
	return Uint(append(b, '.'), uint64(a[3]))
}
