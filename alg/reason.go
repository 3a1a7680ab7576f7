package alg

// Reason says why bytes are not what the gateway expected. It is counted,
// never returned as an error: bad input gets a verdict, not a panic.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonTruncated
	ReasonBadCookie
	ReasonNotControl // "PPTP Message Type" is not 1 (control)
	ReasonBadType    // control message type outside 1..15
	ReasonBadLength  // Length disagrees with the type's RFC length
	ReasonGREVersion // GRE version other than 1 (e.g. v0 tunnels)
	ReasonGREFlags   // C, R, s, Recur, Flags or K not as RFC 2637 requires
	ReasonGREProto   // protocol type other than 0x880B (PPP)
	reasonCount
)

var reasonNames = [...]string{"none", "truncated", "bad_cookie", "not_control", "bad_type",
	"bad_length", "gre_version", "gre_flags", "gre_protocol"}

func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "unknown"
}
