package conntrack_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pptpgw/pptpgw/conntrack"
)

// stateJSONEqual checks that the state writer's encoding of tbl is
// encoding/json's of the same Snapshot, byte for byte (so the state file's
// format is the one any pptpgw reads and writes), and that it decodes into
// that Snapshot. b may hold an earlier snapshot: SnapshotTo reuses it.
// The encoding must hold each of has (the case covers what it is for).
func stateJSONEqual(t *testing.T, b *conntrack.StateBuf, tbl *conntrack.Table, conns int, has ...string) {
	t.Helper()
	tbl.SnapshotTo(b)
	if b.Conns() != conns {
		t.Fatalf("%d connections, want %d", b.Conns(), conns)
	}
	snap := b.Snapshot()
	want, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	got := b.AppendJSON([]byte("{}"))
	if string(got[2:]) != string(want) {
		t.Fatalf("AppendJSON differs from encoding/json:\n got %s\nwant %s", got[2:], want)
	}
	for _, h := range has {
		if !strings.Contains(string(got), h) {
			t.Errorf("no %s in %s", h, got[2:])
		}
	}
	var w bytes.Buffer
	if err := b.EncodeTo(&w); err != nil || w.String() != string(got[2:]) {
		t.Errorf("EncodeTo: %v\n%s\nwant AppendJSON's\n%s", err, w.Bytes(), got[2:])
	}
	var back conntrack.Snapshot
	if err := json.Unmarshal(got[2:], &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap, back, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("decoded (-snapshot +decoded):\n%s", diff)
	}
}

// The state writer's encoding is encoding/json's for an empty table, calls
// in every state with streams cut mid-Call ID and rewrite records, the
// same restored, replicated records (origin, an awkward node name among
// them), the router's own calls, and calls with PPP negotiation state.
func TestStateBufJSON(t *testing.T) {
	var b conntrack.StateBuf
	t.Run("empty", func(t *testing.T) {
		stateJSONEqual(t, &b, newTable(bigLimits), 0)
		if got := string(b.AppendJSON(nil)); got != `{"version":1,"conns":[]}` {
			t.Errorf("empty table: %s", got)
		}
	})
	var s snapScene
	scene := newTable(bigLimits)
	scene.EnableReplica()
	s.before(t, scene)
	n := len(scene.Snapshot().Conns)
	t.Run("scene", func(t *testing.T) {
		stateJSONEqual(t, &b, scene, n, `"msg_bytes":"`, `"wrote":"`, `"has_isn":true`, `"resv":[0,-1]`, `"state":3`, `"state":0`)
	})
	t.Run("restored", func(t *testing.T) {
		restored := newTable(bigLimits)
		if skipped, err := restored.Restore(scene.Snapshot()); err != nil || skipped != 0 {
			t.Fatalf("Restore: %d %v", skipped, err)
		}
		stateJSONEqual(t, &b, restored, n)
	})
	for _, node := range []string{"a", "nöde <&> \"\\\x01\u2028"} {
		t.Run("replica", func(t *testing.T) {
			standby := newTable(bigLimits)
			standby.EnableReplica()
			replicate(t, scene, standby, node, 0)
			stateJSONEqual(t, &b, standby, n, `"origin":`)
		})
	}
	t.Run("unacknowledged rewrites", func(t *testing.T) {
		tbl := newTable(bigLimits)
		res := &fakeResolver{}
		for i, cli := range []conntrack.Addr{cli1, cli2} {
			f := pnsFlow(t, tbl, res, cli, 40001, pac1)
			f.start()
			lag := f.next[dirOut]
			f.ackLag[dirIn] = &lag // the PAC acknowledges nothing: the records stay
			if outer := f.pnsCall(7, 0x100); (outer != 7) != (i == 1) {
				t.Fatalf("call %d: outer %#04x", i, outer)
			}
		}
		stateJSONEqual(t, &b, tbl, 2, `"records":[[`)
	})
	t.Run("local", func(t *testing.T) {
		tbl := newTable(bigLimits)
		router := newFlow(t, tbl, localResolver{}, ep(pub1, 50000), ep(pac1, 1723))
		router.start()
		router.pnsCall(0, 0x200)
		stateJSONEqual(t, &b, tbl, 1, `"local":true`, `"role":3`)
	})
	t.Run("policy", func(t *testing.T) {
		tbl := newTable(conntrack.Limits{})
		send, _, _ := policyCall(t, tbl)
		for _, g := range msChapV2Call {
			send(g)
		}
		stateJSONEqual(t, &b, tbl, 1, `"auth":"mschapv2","mppe":"128-bit stateless"`)
		negotiating := newTable(conntrack.Limits{})
		send, _, _ = policyCall(t, negotiating)
		send(gre{dirOut, lcpAckEAP})
		stateJSONEqual(t, &b, negotiating, 1, `"auth":"eap","negotiating":true`)
	})
	t.Run("smaller after larger", func(t *testing.T) { stateJSONEqual(t, &b, newTable(bigLimits), 0) })
}
