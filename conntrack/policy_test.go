package conntrack_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/alg"
	"github.com/pptpgw/pptpgw/conntrack"
)

// PPP frames in GRE payloads (alg/ppp_test.go has them annotated).
var (
	lcpAckMSCHAPv2 = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x09, 0x03, 0x05, 0xc2, 0x23, 0x81}
	lcpAckEAP      = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x08, 0x03, 0x04, 0xc2, 0x27}
	lcpAckPAP      = []byte{0xff, 0x03, 0xc0, 0x21, 0x02, 0x01, 0x00, 0x08, 0x03, 0x04, 0xc0, 0x23}
	lcpReqPAP      = []byte{0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x08, 0x03, 0x04, 0xc0, 0x23}
	lcpEcho        = []byte{0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 0x12, 0x34, 0x56, 0x78}
	ipcpReq        = []byte{0xff, 0x03, 0x80, 0x21, 0x01, 0x01, 0x00, 0x0a, 0x03, 0x06, 0x0a, 0x00, 0x00, 0x01}
	ccpAck128H     = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x01, 0x00, 0x00, 0x40}
	ccpAck128      = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x00, 0x00, 0x00, 0x40}
	ccpAck40       = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x00, 0x00, 0x00, 0x20}
	ccpAckMPPC     = []byte{0xff, 0x03, 0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x00, 0x00, 0x00, 0x01}
	encrypted      = []byte{0xfd, 0x90, 0x01, 0xaa, 0xbb}
	clearIPv4      = []byte{0x21, 0x45, 0x00, 0x00, 0x14}
)

// gre is one GRE payload of a call: dirOut from the inside client (GREOut),
// dirIn from the PAC (GREIn).
type gre struct {
	dir int
	ppp []byte
}

// policyCall sets up one call from cli1 to pac1 and returns a function
// that sends a GRE payload of it and returns the table's verdict.
func policyCall(t *testing.T, tbl *conntrack.Table) (send func(gre) conntrack.GREVerdict, id string, f *flow) {
	t.Helper()
	f = pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	outer := f.pnsCall(7, 0x4711)
	send = func(g gre) conntrack.GREVerdict {
		f.advance(time.Millisecond)
		if g.dir == dirOut {
			_, v := tbl.GREOutPPP(cli1, pac1, 0x4711, g.ppp, len(g.ppp)+8, f.now)
			return v
		}
		_, _, v := tbl.GREInPPP(pac1, pub1, outer, g.ppp, len(g.ppp)+8, f.now)
		return v
	}
	return send, callName(pub1, pac1, outer), f
}

// A typical MS-CHAPv2 call: the PAC asks for MS-CHAPv2 and the client
// acks it, CCP settles on 128-bit stateless MPPE, then data is encrypted.
var msChapV2Call = []gre{
	{dirIn, lcpReqPAP}, // an offer first, Nak'd: ignored
	{dirOut, lcpAckMSCHAPv2},
	{dirIn, lcpEcho},
	{dirIn, ipcpReq},
	{dirOut, ccpAck128H},
	{dirIn, ccpAck128H},
	{dirOut, encrypted},
	{dirIn, encrypted},
}

func TestPolicyCalls(t *testing.T) {
	tests := []struct {
		name    string
		policy  *conntrack.Policy
		frames  []gre
		cleared int    // index of the frame that clears the call; -1: never
		reason  string // the reason the observer hears
		auth    string
		mppe    string
	}{
		{"no_policy_mschapv2", nil, msChapV2Call, -1, "", "mschapv2", "128-bit stateless"},
		{"no_policy_pap_clear_ip", nil, []gre{{dirOut, lcpAckPAP}, {dirIn, ipcpReq}, {dirOut, clearIPv4}}, -1, "", "pap", "none"},
		{"no_policy_no_auth", nil, []gre{{dirIn, ipcpReq}}, -1, "", "none", ""},
		{"mschapv2_required_and_acked", &conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, msChapV2Call, -1, "", "mschapv2", "128-bit stateless"},
		{"eap_in_list", &conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2, alg.AuthEAP}},
			[]gre{{dirOut, lcpAckEAP}, {dirIn, ipcpReq}, {dirOut, encrypted}}, -1, "", "eap", "none"},
		{"pap_not_allowed", &conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}},
			[]gre{{dirIn, lcpReqPAP}, {dirOut, lcpAckPAP}, {dirIn, ipcpReq}}, 1, conntrack.ReasonPolicyAuth, "pap", ""},
		{"pap_allowed", &conntrack.Policy{Auth: []alg.Auth{alg.AuthPAP}},
			[]gre{{dirOut, lcpAckPAP}, {dirIn, ipcpReq}, {dirOut, clearIPv4}}, -1, "", "pap", "none"},
		{"no_auth_when_required", &conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}},
			[]gre{{dirIn, lcpEcho}, {dirIn, ipcpReq}}, 1, conntrack.ReasonPolicyAuth, "none", ""},
		{"mppe_128_required_and_acked", &conntrack.Policy{MinMPPE: 128}, msChapV2Call, -1, "", "mschapv2", "128-bit stateless"},
		{"mppe_56_required_128_acked", &conntrack.Policy{MinMPPE: 56}, []gre{{dirOut, ccpAck128}, {dirIn, encrypted}}, -1, "", "none", "128-bit"},
		{"mppe_40_acked_128_required", &conntrack.Policy{MinMPPE: 128},
			[]gre{{dirOut, lcpAckMSCHAPv2}, {dirOut, ccpAck40}, {dirIn, encrypted}}, 1, conntrack.ReasonPolicyMPPE, "mschapv2", "40-bit"},
		{"mppc_only", &conntrack.Policy{MinMPPE: 40}, []gre{{dirIn, ccpAckMPPC}}, 0, conntrack.ReasonPolicyMPPE, "none", "none"},
		{"encrypted_without_ccp", &conntrack.Policy{MinMPPE: 40},
			[]gre{{dirOut, lcpAckMSCHAPv2}, {dirIn, encrypted}}, 1, conntrack.ReasonPolicyNoMPPE, "mschapv2", "none"},
		{"clear_data", &conntrack.Policy{MinMPPE: 40},
			[]gre{{dirOut, lcpAckPAP}, {dirIn, ipcpReq}, {dirOut, clearIPv4}}, 2, conntrack.ReasonPolicyNoMPPE, "pap", "none"},
		{"both_required_ok", &conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}, MinMPPE: 128}, msChapV2Call, -1, "", "mschapv2", "128-bit stateless"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &policyObs{}
			tbl := conntrack.New(conntrack.Limits{}, obs)
			tbl.SetPolicy(tt.policy, t0.UnixNano())
			send, id, _ := policyCall(t, tbl)
			for i, g := range tt.frames {
				v := send(g)
				want := conntrack.GREForward
				if tt.cleared >= 0 && i >= tt.cleared {
					want = conntrack.GRERefused
				}
				if v != want {
					t.Fatalf("frame %d (% x): verdict %v, want %v", i, g.ppp, v, want)
				}
			}
			v := callByID(t, tbl, id)
			if v.Auth != tt.auth || v.MPPE != tt.mppe {
				t.Errorf("auth %q mppe %q, want %q %q", v.Auth, v.MPPE, tt.auth, tt.mppe)
			}
			cleared := uint64(0)
			wantState := "established"
			if tt.cleared >= 0 {
				cleared, wantState = 1, "closing"
			}
			if v.State != wantState {
				t.Errorf("state %q, want %q", v.State, wantState)
			}
			wantStats(t, tbl, map[string]uint64{"calls_cleared_policy": cleared, "calls_active": 1 - cleared})
			if got := obs.reasons(); tt.reason == "" && len(got) != 0 || tt.reason != "" && (len(got) != 1 || got[0] != tt.reason) {
				t.Errorf("observer heard %v, want [%s]", got, tt.reason)
			}
		})
	}
}

// After the negotiation the GRE path only loads the watch flag: later LCP
// frames change nothing and nothing allocates.
func TestPolicySteadyState(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}, MinMPPE: 128}, t0.UnixNano())
	send, id, _ := policyCall(t, tbl)
	for _, g := range msChapV2Call {
		send(g)
	}
	if v := send(gre{dirOut, lcpAckPAP}); v != conntrack.GREForward {
		t.Fatalf("LCP after encryption started: %v", v)
	}
	if v := callByID(t, tbl, id); v.Auth != "mschapv2" {
		t.Errorf("auth changed to %q after the negotiation", v.Auth)
	}
	for _, g := range []gre{{dirIn, encrypted}, {dirOut, encrypted}} {
		if n := testing.AllocsPerRun(200, func() { send(g) }); n != 0 {
			t.Errorf("GRE %d in steady state allocates %v", g.dir, n)
		}
	}
}

// While negotiating, peeking allocates nothing either.
func TestPolicyNegotiatingAllocs(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, t0.UnixNano())
	send, _, _ := policyCall(t, tbl)
	frames := []gre{{dirIn, lcpEcho}, {dirOut, lcpAckMSCHAPv2}, {dirIn, ipcpReq}, {dirOut, ccpAck128H}}
	if n := testing.AllocsPerRun(50, func() {
		for _, g := range frames {
			send(g)
		}
	}); n != 0 {
		t.Errorf("peeking allocates %v per run", n)
	}
}

// A reload with a stricter policy clears the calls that no longer comply.
func TestSetPolicyClearsUp(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	send, id, f := policyCall(t, tbl)
	for _, g := range []gre{{dirOut, lcpAckPAP}, {dirIn, ipcpReq}, {dirOut, ccpAck128H}, {dirIn, encrypted}} {
		send(g)
	}
	tbl.SetPolicy(&conntrack.Policy{MinMPPE: 128}, f.now)
	if v := callByID(t, tbl, id); v.State != "established" {
		t.Fatalf("MPPE 128 call cleared by --require-mppe 128: %q", v.State)
	}
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, f.now)
	if v := send(gre{dirIn, encrypted}); v != conntrack.GRERefused {
		t.Errorf("GRE of a PAP call after --require-auth mschapv2: %v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_cleared_policy": 1, "calls_active": 0, "calls_refused": 1})
	// The tombstone goes like any other.
	tbl.Expire(f.now + int64(conntrack.DefaultSetupTimeout+time.Second))
	if ids := callIDs(tbl); len(ids) != 0 {
		t.Errorf("calls after the setup timeout: %v", ids)
	}
}

// A call picked up mid-stream or whose negotiation the gateway did not see
// is not judged: nothing is known about it.
func TestPolicyUnknownNotJudged(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	send, id, f := policyCall(t, tbl)
	for i := 0; i < 600; i++ { // past the peek budget, saying nothing
		send(gre{dirIn, lcpEcho})
	}
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}, MinMPPE: 128}, f.now)
	if v := send(gre{dirIn, clearIPv4}); v != conntrack.GREForward {
		t.Errorf("GRE after the peek budget: %v", v)
	}
	if v := callByID(t, tbl, id); v.Auth != "" || v.MPPE != "" || v.State != "established" {
		t.Errorf("call %+v", v)
	}
}

// auth and mppe survive a restart, and so does the watch.
func TestPolicySnapshot(t *testing.T) {
	for _, tt := range []struct {
		name   string
		frames []gre
		auth   string
		mppe   string
		watch  bool
	}{
		{"done", msChapV2Call, "mschapv2", "128-bit stateless", false},
		{"40_stateless", []gre{{dirOut, lcpAckMSCHAPv2}, {dirOut, []byte{0x80, 0xfd, 0x02, 0x05, 0x00, 0x0a, 0x12, 0x06, 0x01, 0x00, 0x00, 0x20}}, {dirIn, encrypted}}, "mschapv2", "40-bit stateless", false},
		{"negotiating", []gre{{dirOut, lcpAckEAP}}, "eap", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tbl := newTable(conntrack.Limits{})
			send, id, _ := policyCall(t, tbl)
			for _, g := range tt.frames {
				send(g)
			}
			snap := tbl.Snapshot()
			tbl2 := newTable(conntrack.Limits{})
			if skipped, err := tbl2.Restore(snap); err != nil || skipped != 0 {
				t.Fatalf("Restore: %d %v", skipped, err)
			}
			v := callByID(t, tbl2, id)
			if v.Auth != tt.auth || v.MPPE != tt.mppe {
				t.Errorf("restored auth %q mppe %q, want %q %q", v.Auth, v.MPPE, tt.auth, tt.mppe)
			}
			// A policy now: a finished negotiation is judged from the
			// file, an unfinished one from what comes next.
			tbl2.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}}, t0.UnixNano())
			want := "established"
			if tt.auth != "mschapv2" {
				want = "closing"
			}
			if v := callByID(t, tbl2, id); v.State != want {
				t.Errorf("after SetPolicy: %q, want %q", v.State, want)
			}
		})
	}
}

func TestPolicyAllowLists(t *testing.T) {
	pfx := func(s ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, x := range s {
			ps = append(ps, netip.MustParsePrefix(x))
		}
		return ps
	}
	tests := []struct {
		name   string
		policy conntrack.Policy
		flows  func(tbl *conntrack.Table, res conntrack.Resolver) []*flow
		denied []bool
		reason []string
	}{
		{"inside", conntrack.Policy{AllowInside: pfx("10.0.0.1/32")},
			func(tbl *conntrack.Table, res conntrack.Resolver) []*flow {
				return []*flow{pnsFlow(t, tbl, res, cli1, 40001, pac1), pnsFlow(t, tbl, res, cli2, 40002, pac1)}
			}, []bool{false, true}, []string{conntrack.ReasonDenyInside}},
		{"peer", conntrack.Policy{AllowPeer: pfx("198.51.100.0/28")},
			func(tbl *conntrack.Table, res conntrack.Resolver) []*flow {
				return []*flow{pnsFlow(t, tbl, res, cli1, 40001, pac1), pnsFlow(t, tbl, res, cli1, 40002, pac2)}
			}, []bool{false, true}, []string{conntrack.ReasonDenyPeer}},
		{"pac_inside_outside_client", conntrack.Policy{AllowPeer: pfx("192.0.2.50/32", "192.0.2.128/25")},
			func(tbl *conntrack.Table, res conntrack.Resolver) []*flow {
				return []*flow{pacFlow(t, tbl, res, srv1, rcli1, 50001), pacFlow(t, tbl, res, srv1, rcli2, 50002)}
			}, []bool{false, true}, []string{conntrack.ReasonDenyPeer}},
		{"both_lists", conntrack.Policy{AllowInside: pfx("10.0.0.0/24"), AllowPeer: pfx("198.51.100.10/32")},
			func(tbl *conntrack.Table, res conntrack.Resolver) []*flow {
				return []*flow{pnsFlow(t, tbl, res, cli1, 40001, pac1), pnsFlow(t, tbl, res, clientAddr(1), 40002, pac1),
					pnsFlow(t, tbl, res, cli2, 40003, pac2)}
			}, []bool{false, true, true}, []string{conntrack.ReasonDenyInside, conntrack.ReasonDenyPeer}},
		{"empty_allows_all", conntrack.Policy{},
			func(tbl *conntrack.Table, res conntrack.Resolver) []*flow {
				return []*flow{pnsFlow(t, tbl, res, cli1, 40001, pac1), pacFlow(t, tbl, res, srv1, rcli1, 50001)}
			}, []bool{false, false}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &policyObs{}
			tbl := conntrack.New(conntrack.Limits{}, obs)
			p := tt.policy
			tbl.SetPolicy(&p, t0.UnixNano())
			deniedN := 0
			for i, f := range tt.flows(tbl, &fakeResolver{}) {
				opener := dirOut
				if f.ends[dirOut].Port == 1723 {
					opener = dirIn // the outside client opens to the PAC inside
				}
				f.open(opener)
				r := f.last
				if tt.denied[i] {
					deniedN += 3
					if r.Tracked || !r.Drop || !r.Denied {
						t.Errorf("flow %d: %+v, want dropped, denied, untracked", i, r)
					}
				} else if !r.Tracked || r.Drop || r.Denied {
					t.Errorf("flow %d: %+v, want tracked", i, r)
				}
			}
			wantStats(t, tbl, map[string]uint64{"control_denied": uint64(deniedN)})
			if got := obs.denials(); len(got) != deniedN/3*3 {
				t.Errorf("observer heard %v", got)
			} else {
				for _, r := range got {
					found := false
					for _, w := range tt.reason {
						found = found || r == w
					}
					if !found {
						t.Errorf("denial reason %q, want one of %v", r, tt.reason)
					}
				}
			}
		})
	}
}

// policyObs records what the table reports.
type policyObs struct {
	conntrack.NopObserver
	mu      sync.Mutex
	refused []string
	denied  []string
}

func (o *policyObs) CallRefused(_ conntrack.CallInfo, reason string) {
	o.mu.Lock()
	o.refused = append(o.refused, reason)
	o.mu.Unlock()
}

func (o *policyObs) ControlDenied(_ conntrack.ConnInfo, reason string) {
	o.mu.Lock()
	o.denied = append(o.denied, reason)
	o.mu.Unlock()
}

func (o *policyObs) reasons() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.refused...)
}

func (o *policyObs) denials() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.denied...)
}

// Two GRE directions peek concurrently (two queues) while the policy is
// reloaded: the race detector's test.
func TestPolicyConcurrent(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	tbl.SetPolicy(&conntrack.Policy{Auth: []alg.Auth{alg.AuthMSCHAPv2}, MinMPPE: 128}, t0.UnixNano())
	f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	f.start()
	outer := f.pnsCall(7, 0x4711)
	now := f.now
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			tbl.GREOutPPP(cli1, pac1, 0x4711, msChapV2Call[i%len(msChapV2Call)].ppp, 40, now)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			tbl.GREInPPP(pac1, pub1, outer, msChapV2Call[(i+3)%len(msChapV2Call)].ppp, 40, now)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			tbl.SetPolicy(&conntrack.Policy{MinMPPE: 40 + 8*i}, now)
			_ = rows(tbl)
			_ = tbl.Snapshot()
		}
	}()
	wg.Wait()
}
