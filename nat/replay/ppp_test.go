package replay_test

import "github.com/pptpgw/pptpgw/nat/replay"

// withPPP is a call summary with what its PPP link negotiated in the
// capture (auth, mppe; README "Policy").
func withPPP(c replay.CallSummary, auth, mppe string) replay.CallSummary {
	c.Auth, c.MPPE = auth, mppe
	return c
}
