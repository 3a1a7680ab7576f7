package conntrack_test

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/pptpgw/pptpgw/conntrack"
)

// localResolver places the router's own connections: the end at pub1 is
// inside and public (what nat's OUTPUT/INPUT hooks give the table).
type localResolver struct{}

func (localResolver) Resolve(src, dst conntrack.Endpoint) (conntrack.ConnSpec, bool) {
	if dst.Addr == pub1 {
		src, dst = dst, src
	}
	return conntrack.ConnSpec{Inside: src, Outside: dst, Public: src, Local: true}, true
}

// TestLocalCalls: the router's own calls share the outer Call IDs with
// the translated ones towards the same peer (the router's 0 kept, the LAN
// client's 0 renumbered), take the local roles, stay out of the kernel
// fast paths, ignore the per-inside limit and the policy, and survive a
// snapshot and restore as they were.
func TestLocalCalls(t *testing.T) {
	tbl := newTable(conntrack.Limits{MaxCallsPerInside: 1})
	// The router (pub1) is not an inside client: the policy does not apply.
	tbl.SetPolicy(&conntrack.Policy{AllowInside: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, t0.UnixNano())
	router := newFlow(t, tbl, localResolver{}, ep(pub1, 50000), ep(pac1, 1723))
	router.start()
	if outer := router.pnsCall(0, 0x200); outer != 0 {
		t.Errorf("router's Call ID 0 renumbered to %#04x although free", outer)
	}
	if outer := router.pnsCall(1, 0x201); outer != 1 {
		t.Errorf("router's second call (per-inside limit 1) got outer %#04x", outer)
	}
	lan := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
	lan.start()
	if outer := lan.pnsCall(0, 0x100); outer != 2 {
		t.Errorf("LAN client's 0 got outer %#04x, want 2 (0 and 1 are the router's)", outer)
	}
	// The router's GRE: in by (peer, outer) to its own address, out by
	// (its address, peer, the peer's ID), nothing to rewrite.
	if a, id, v := tbl.GREIn(pac1, pub1, 1, 10, router.now); v != conntrack.GREForward || a != pub1 || id != 1 {
		t.Errorf("GREIn router's call: %v %#04x %v", a, id, v)
	}
	if p, v := tbl.GREOut(pub1, pac1, 0x200, 10, router.now); v != conntrack.GREForward || p != pub1 {
		t.Errorf("GREOut router's call: %v %v", p, v)
	}
	check := func(tbl *conntrack.Table, when string) {
		t.Helper()
		roles := map[string]int{}
		for _, c := range tbl.Calls() {
			roles[c.Role.String()]++
			if c.Role == conntrack.RoleLocalPNS && (!c.Conn.Local || c.Inside != pub1 || c.Public != pub1) {
				t.Errorf("%s: router's call %+v", when, c)
			}
		}
		if roles["local-pns"] != 2 || roles["pns-inside"] != 1 {
			t.Errorf("%s: roles %v", when, roles)
		}
		d, _ := tbl.Desired(nil)
		if len(d) != 1 || d[0].Inside != cli1 {
			t.Errorf("%s: fast-path mappings %+v, want the LAN client's only", when, d)
		}
	}
	check(tbl, "live")
	data, err := json.Marshal(tbl.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap conntrack.Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	t2 := newTable(conntrack.Limits{MaxCallsPerInside: 1})
	if skipped, err := t2.Restore(snap); err != nil || skipped != 0 {
		t.Fatalf("Restore: %d %v", skipped, err)
	}
	check(t2, "restored")
	// Restored, the router's connection is still its own: a third call
	// is neither refused (per-inside limit) nor placed by a resolver.
	router.tbl = t2
	if outer := router.pnsCall(2, 0x202); outer != 3 { // 2 is the LAN client's

		t.Errorf("router's third call after restore: outer %#04x", outer)
	}
}
