//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/e2e/lab"
)

// policyCall is the part of a `pptpgw calls --json` row the policy adds.
type policyCall struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	InsideAddr string `json:"inside_addr"`
	Auth       string `json:"auth"`
	MPPE       string `json:"mppe"`
}

func policyCalls(g *lab.Gateway) ([]policyCall, error) {
	out, errOut, code := g.NS.Pptpgw("calls", "--json", "--admin-socket", g.AdminSocket)
	if code != 0 {
		return nil, fmt.Errorf("pptpgw calls --json: exit %d: %s", code, errOut)
	}
	var body struct {
		Calls []policyCall `json:"calls"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		return nil, fmt.Errorf("pptpgw calls --json: %w: %q", err, out)
	}
	return body.Calls, nil
}

// TestGWPolicyAuth: pptpd's PPP peer asks for PAP (LCP option 3) and the
// client's acks it, in clear inside GRE. A gateway run with
// --require-auth pap lets the call up and shows "pap" in `calls`; one run
// with --require-auth mschapv2 clears the call on that Configure-Ack: its
// GRE is dropped from then on, `calls` no longer lists it established, and
// stats count calls_cleared_policy 1.
func TestGWPolicyAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		require string
		cleared bool
	}{{"pap", false}, {"mschapv2", true}} {
		t.Run(tc.require, func(t *testing.T) {
			tp := newGWTopo(t, 1)
			l := tp.l
			gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, Args: []string{"--require-auth", tc.require}})
			srv := tp.srv.StartPPTPD(lab.PPTPDConfig{AuthPAP: true})
			pc := tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
			ends := []end{{"pptp1", pc.Status}}

			// The call's auth as the gateway saw it.
			var call policyCall
			l.MustWaitFor("the call's auth known to the gateway", func() error {
				calls, err := policyCalls(gw)
				if err != nil {
					return err
				}
				if len(calls) != 1 || calls[0].Auth == "" {
					return fmt.Errorf("calls %+v", calls)
				}
				call = calls[0]
				return nil
			}, 20*time.Second)
			if call.Auth != "pap" || call.InsideAddr != clientIP(0) {
				t.Errorf("call %+v, want auth pap from %s", call, clientIP(0))
			}

			if !tc.cleared {
				waitPPP(l, ends, srv, 20*time.Second)
				waitCalls(l, gw, 1, trafficBothWays, 5*time.Second)
				st := gw.MustStats()
				if st["calls_cleared_policy"] != 0 || st["calls_active"] != 1 {
					t.Errorf("stats calls_cleared_policy %d calls_active %d, want 0 and 1", st["calls_cleared_policy"], st["calls_active"])
				}
				healthy(t, st)
				return
			}

			if call.State == "established" {
				t.Errorf("call %+v still established under --require-auth mschapv2", call)
			}
			st := gw.MustStats()
			if st["calls_cleared_policy"] != 1 || st["calls_active"] != 0 {
				t.Errorf("stats calls_cleared_policy %d calls_active %d, want 1 and 0", st["calls_cleared_policy"], st["calls_active"])
			}
			// GRE of the cleared call keeps coming (LCP echoes and
			// retransmitted Configure-Requests) and is dropped.
			l.MustWaitFor("GRE of the cleared call dropped", func() error {
				st, err := gw.Stats()
				if err != nil {
					return err
				}
				if st["packets_refused_call"]+st["packets_unknown_call"] == 0 {
					return fmt.Errorf("nothing dropped yet: %v", st)
				}
				return nil
			}, 10*time.Second)
			if !logHas(gw, "call refused", `"reason": "policy-auth"`, `"auth": "pap"`) {
				t.Errorf("no rate-limited 'call refused' line with reason policy-auth and auth pap in %s", gw.Log)
			}
			healthy(t, gw.MustStats())
		})
	}
}

// TestGWPolicyAllowInside: with --allow-inside naming another address, a
// client's control connection is dropped from its first packet the gateway
// places (the SYN-ACK), so its TCP handshake never completes: no call,
// control_denied counted, a rate-limited log line.
func TestGWPolicyAllowInside(t *testing.T) {
	t.Parallel()
	tp := newGWTopo(t, 1)
	l := tp.l
	gw := tp.gw.StartGateway(lab.GatewayConfig{InstallRules: true, Args: []string{"--allow-inside", clientIP(1) + "/32"}})
	tp.srv.StartPPTPD(lab.PPTPDConfig{})
	tp.clients[0].StartPPTPClient(lab.PPTPClientConfig{Server: serverIP, LocalBind: clientIP(0)})
	l.MustWaitFor("the control connection denied", func() error {
		st, err := gw.Stats()
		if err != nil {
			return err
		}
		if st["control_denied"] == 0 {
			return fmt.Errorf("control_denied 0: %v", st)
		}
		return nil
	}, 10*time.Second)
	time.Sleep(2 * time.Second)
	st := gw.MustStats()
	if st["control_messages"] != 0 || st["calls_set_up"] != 0 || st["control_conns_opened"] != 0 {
		t.Errorf("denied connection got through: %v", st)
	}
	if calls, err := gw.Calls(); err != nil || len(calls) != 0 {
		t.Errorf("calls %v, %v; want none", callList(calls), err)
	}
	if !logHas(gw, "control connection denied", `"reason": "deny-inside"`, clientIP(0)) {
		t.Errorf("no 'control connection denied' line for %s in %s", clientIP(0), gw.Log)
	}
	healthy(t, st)
}
