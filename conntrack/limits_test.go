package conntrack_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// recorder is an Observer that keeps what it heard.
type recorder struct {
	up, down, refused, malformed []string
}

func (r *recorder) CallUp(c conntrack.CallInfo) { r.up = append(r.up, c.ID()) }
func (r *recorder) CallRefused(c conntrack.CallInfo, reason string) {
	r.refused = append(r.refused, c.ID()+" "+reason)
}
func (r *recorder) CallDown(c conntrack.CallInfo, reason string) {
	r.down = append(r.down, c.ID()+" "+reason)
}
func (r *recorder) Malformed(c conntrack.ConnInfo, reason string) {
	r.malformed = append(r.malformed, reason)
}

func TestLimitMaxCalls(t *testing.T) {
	obs := &recorder{}
	tbl := conntrack.New(conntrack.Limits{MaxCalls: 2}, obs)
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.pnsCall(1, 0x101)
	b := pnsFlow(t, tbl, res, cli2, 40002, pac1)
	b.start()
	b.pnsCall(1, 0x102) // outer 2
	c := pnsFlow(t, tbl, res, cli3, 40003, pac1)
	c.start()
	out := c.send(dirOut, ocrq(1))
	if u16(out, 12) != 3 {
		t.Fatalf("outer %#04x", u16(out, 12))
	}
	rep := ocrp(0x103, 3, 1)
	in := c.send(dirIn, rep)
	if len(in) != len(rep) || in[16] != 2 {
		t.Fatalf("over MaxCalls: result %d (len %d), want 2 in place", in[16], len(in))
	}
	if u16(in, 14) != 1 || u16(in, 12) != 0x103 {
		t.Errorf("refused OCRP @12 %#04x @14 %#04x", u16(in, 12), u16(in, 14))
	}
	for i := range rep {
		if i != 14 && i != 15 && i != 16 && in[i] != rep[i] {
			t.Errorf("byte %d changed", i)
		}
	}
	if !c.last.Modified {
		t.Errorf("refusal not reported modified")
	}
	wantStats(t, tbl, map[string]uint64{"calls_refused": 1, "calls_active": 2, "calls_set_up": 2, "calls_pending": 0})
	if len(obs.refused) != 1 || obs.refused[0] != "203.0.113.1/198.51.100.10/3 max-calls" {
		t.Errorf("observer refused %v", obs.refused)
	}
	// The tombstone: listed, no GRE, its outer ID reserved.
	if v := callByID(t, tbl, callName(pub1, pac1, 3)); v.State != "closing" {
		t.Errorf("tombstone row state %q", v.State)
	}
	if _, _, v := tbl.GREIn(pac1, pub1, 3, 1, c.now); v != conntrack.GRERefused {
		t.Errorf("tombstone GREIn: %v, want GRERefused", v)
	}
	if _, v := tbl.GREOut(cli3, pac1, 0x103, 1, c.now); v == conntrack.GREForward {
		t.Errorf("tombstone GREOut forwarded")
	}
	// Existing calls are not disturbed.
	for _, o := range []uint16{1, 2} {
		if _, _, v := tbl.GREIn(pac1, pub1, o, 1, c.now); v != conntrack.GREForward {
			t.Errorf("existing call %d: %v", o, v)
		}
	}
	// A new call can't take the tombstone's ID.
	out = c.send(dirOut, ocrq(3))
	if u16(out, 12) != 4 {
		t.Errorf("new call took %#04x, want 4 (3 is a tombstone)", u16(out, 12))
	}
	c.send(dirIn, ocrp(0x104, 4, 4)) // busy: gone
	// Control messages of the tombstone are still rewritten.
	out = c.send(dirOut, ccrq(1))
	if u16(out, 12) != 3 {
		t.Errorf("tombstone CCRQ: %#04x, want 3", u16(out, 12))
	}
	// The tombstone goes after SetupTimeout; its ID is free again.
	tbl.Expire(c.now + int64(conntrack.DefaultSetupTimeout-time.Second))
	if _, _, v := tbl.GREIn(pac1, pub1, 3, 1, c.now); v != conntrack.GRERefused {
		t.Errorf("tombstone gone early: %v", v)
	}
	tbl.Expire(c.now + int64(conntrack.DefaultSetupTimeout))
	if _, _, v := tbl.GREIn(pac1, pub1, 3, 1, c.now); v != conntrack.GREUnknown {
		t.Errorf("tombstone after SetupTimeout: %v", v)
	}
	if n := len(rows(tbl)); n != 2 {
		t.Errorf("calls %v", callIDs(tbl))
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 0, "calls_active": 2})
}

// A tombstone ends on CDN too.
func TestLimitTombstoneEndsOnCDN(t *testing.T) {
	tbl := newTable(conntrack.Limits{MaxCalls: 1})
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.pnsCall(1, 0x101)
	a.send(dirOut, ocrq(2))
	if in := a.send(dirIn, ocrp(0x102, 2, 1)); in[16] != 2 {
		t.Fatalf("not refused")
	}
	a.send(dirIn, cdn(0x102))
	if _, _, v := tbl.GREIn(pac1, pub1, 2, 1, a.now); v != conntrack.GREUnknown {
		t.Errorf("tombstone after CDN: %v", v)
	}
	if n := len(rows(tbl)); n != 1 {
		t.Errorf("calls %v", callIDs(tbl))
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 0, "calls_refused": 1})
}

func TestLimitMaxCallsPerInside(t *testing.T) {
	tbl := newTable(conntrack.Limits{MaxCallsPerInside: 1})
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.pnsCall(1, 0x101)
	a2 := pnsFlow(t, tbl, res, cli1, 40011, pac2) // the same client, another PAC
	a2.start()
	a2.send(dirOut, ocrq(9))
	if in := a2.send(dirIn, ocrp(0x109, 9, 1)); in[16] != 2 {
		t.Errorf("second call of one inside address: result %d, want 2", in[16])
	}
	b := pnsFlow(t, tbl, res, cli2, 40002, pac1)
	b.start()
	b.pnsCall(2, 0x102) // another inside address is fine
	wantStats(t, tbl, map[string]uint64{"calls_refused": 1, "calls_active": 2})
	// Once the first call ends, the client may call again.
	a.send(dirIn, cdn(0x101))
	a.pnsCall(3, 0x103)
	wantStats(t, tbl, map[string]uint64{"calls_refused": 1, "calls_active": 2})
}

// The reply refused over a limit may travel either way: an ICRP from an
// inside client, an OCRP from an inside PAC.
func TestLimitRefusedReplyOut(t *testing.T) {
	tbl := newTable(conntrack.Limits{MaxCalls: 1})
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.pnsCall(1, 0x101)

	a.send(dirIn, icrq(0x200))
	out := a.send(dirOut, icrp(7, 0x200, 1))
	if out[16] != 2 || u16(out, 12) != 7 {
		t.Errorf("ICRP over the limit: result %d id %#04x", out[16], u16(out, 12))
	}
	if _, _, v := tbl.GREIn(pac1, pub1, 7, 1, a.now); v != conntrack.GRERefused {
		t.Errorf("refused ICRP's GRE: %v", v)
	}

	f := pacFlow(t, tbl, res, srv1, rcli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x300))
	out = f.send(dirOut, ocrp(0x40, 0x300, 1))
	if out[16] != 2 {
		t.Errorf("OCRP out over the limit: result %d", out[16])
	}
	if _, _, v := tbl.GREIn(rcli1, pub1, 0x40, 1, f.now); v != conntrack.GRERefused {
		t.Errorf("refused OCRP's GRE: %v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_refused": 2, "calls_active": 1})
}

func TestDelete(t *testing.T) {
	obs := &recorder{}
	tbl := conntrack.New(conntrack.Limits{}, obs)
	f := twoCalls(t, tbl)
	id := callName(pub1, pac1, 0x10)
	if err := tbl.Delete(id, t0.UnixNano()); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, v := tbl.GREIn(pac1, pub1, 0x10, 1, f.now); v != conntrack.GRERefused {
		t.Errorf("deleted call's GREIn: %v", v)
	}
	if _, v := tbl.GREOut(cli1, pac1, 0x8010, 1, f.now); v == conntrack.GREForward {
		t.Errorf("deleted call's GREOut forwarded")
	}
	if greIn(tbl, 0x20) != conntrack.GREForward {
		t.Errorf("other call disturbed")
	}
	if err := tbl.Delete(id, t0.UnixNano()); !errors.Is(err, conntrack.ErrNoCall) {
		t.Errorf("second Delete: %v", err)
	}
	if err := tbl.Delete("203.0.113.1/198.51.100.10/99", t0.UnixNano()); !errors.Is(err, conntrack.ErrNoCall) {
		t.Errorf("Delete of an unknown call: %v", err)
	}
	if len(obs.refused) != 1 || obs.refused[0] != id+" deleted" {
		t.Errorf("observer: %v", obs.refused)
	}
	// The ID stays reserved until SetupTimeout from the deletion.
	out := f.send(dirOut, ocrq(0x10))
	if u16(out, 12) == 0x10 {
		t.Errorf("new call took the deleted call's ID")
	}
	tbl.Expire(nowAt(conntrack.DefaultSetupTimeout))
	if _, _, v := tbl.GREIn(pac1, pub1, 0x10, 1, f.now); v != conntrack.GREUnknown {
		t.Errorf("deleted call after SetupTimeout: %v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_active": 1})
}

var shortLimits = conntrack.Limits{GREIdle: 10 * time.Second, ControlIdle: 60 * time.Second,
	SetupTimeout: 5 * time.Second, CloseLinger: 2 * time.Second}

func TestTimeoutGREIdle(t *testing.T) {
	obs := &recorder{}
	tbl := conntrack.New(shortLimits, obs)
	f := twoCalls(t, tbl)
	// Call 0x10 sees GRE at 8 s, call 0x20 sees nothing.
	if _, _, v := tbl.GREIn(pac1, pub1, 0x10, 1, nowAt(8*time.Second)); v != conntrack.GREForward {
		t.Fatal(v)
	}
	tbl.Expire(nowAt(10*time.Second - 1))
	if n := len(rows(tbl)); n != 2 {
		t.Fatalf("calls before GREIdle: %v", callIDs(tbl))
	}
	tbl.Expire(nowAt(10 * time.Second))
	if s := states(tbl); len(s) != 1 || s[0x10] == "" {
		t.Errorf("after 10 s: %v, want only 0x10", s)
	}
	if len(obs.down) != 1 || obs.down[0] != callName(pub1, pac1, 0x20)+" gre-idle" {
		t.Errorf("observer down %v", obs.down)
	}
	// GRE out refreshes too.
	if _, v := tbl.GREOut(cli1, pac1, 0x8010, 1, nowAt(17*time.Second)); v != conntrack.GREForward {
		t.Fatal(v)
	}
	tbl.Expire(nowAt(26 * time.Second))
	if n := len(rows(tbl)); n != 1 {
		t.Errorf("GRE out did not refresh: %v", callIDs(tbl))
	}
	// A control message about calls refreshes them as well.
	f.now = nowAt(25 * time.Second)
	f.send(dirIn, sli(0x10))
	tbl.Expire(nowAt(34 * time.Second))
	if n := len(rows(tbl)); n != 1 {
		t.Errorf("SLI did not refresh: %v", callIDs(tbl))
	}
	tbl.Expire(nowAt(35 * time.Second))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("after idle: %v", callIDs(tbl))
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 2, "calls_active": 0, "control_conns_active": 1})
}

func TestTimeoutControlIdle(t *testing.T) {
	tbl := newTable(shortLimits)
	f := twoCalls(t, tbl)
	for s := 5; s <= 60; s += 5 { // GRE keeps the calls alive, not the connection
		tbl.GREIn(pac1, pub1, 0x10, 1, nowAt(time.Duration(s)*time.Second))
		tbl.GREIn(pac1, pub1, 0x20, 1, nowAt(time.Duration(s)*time.Second))
	}
	tbl.Expire(nowAt(60*time.Second - 1))
	if n := len(rows(tbl)); n != 2 {
		t.Fatalf("calls before ControlIdle: %v", callIDs(tbl))
	}
	tbl.Expire(nowAt(60 * time.Second))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("calls after ControlIdle: %v", callIDs(tbl))
	}
	wantStats(t, tbl, map[string]uint64{"calls_ended": 2, "control_conns_closed": 1, "control_conns_active": 1})
	tbl.Expire(nowAt(62*time.Second - 1))
	if tbl.Sizes().Conns != 1 {
		t.Errorf("connection gone before CloseLinger")
	}
	tbl.Expire(nowAt(62 * time.Second))
	wantEmpty(t, tbl)
	_ = f
}

func TestTimeoutSetup(t *testing.T) {
	tbl := newTable(shortLimits)
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.send(dirOut, ocrq(5)) // never answered
	p := pacFlow(t, tbl, res, srv1, rcli1, 50000)
	p.start()
	p.send(dirIn, ocrq(6)) // never answered by the inside PAC
	wantStats(t, tbl, map[string]uint64{"calls_pending": 2})
	tbl.Expire(nowAt(5*time.Second - 1))
	if n := len(rows(tbl)); n != 2 {
		t.Fatalf("pending calls before SetupTimeout: %v", callIDs(tbl))
	}
	tbl.Expire(nowAt(5 * time.Second))
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("pending calls after SetupTimeout: %v", callIDs(tbl))
	}
	wantStats(t, tbl, map[string]uint64{"calls_pending": 0, "calls_ended": 0})
	if s := tbl.Sizes(); s.ByOuter != 0 || s.Buckets != 0 || s.Pending != 0 {
		t.Errorf("sizes %+v", s)
	}
	// The ID is free: a late OCRP finds no call and passes untouched.
	in := a.send(dirIn, ocrp(0x99, 5, 1))
	if in[16] != 1 || a.last.Modified {
		t.Errorf("late OCRP changed")
	}
	if n := len(rows(tbl)); n != 0 {
		t.Errorf("late OCRP made a call: %v", callIDs(tbl))
	}
}

// SetLimits changes the limits in force; existing calls stay.
func TestSetLimits(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := twoCalls(t, tbl)
	tbl.SetLimits(conntrack.Limits{MaxCalls: 1})
	if l := tbl.Limits(); l.MaxCalls != 1 || l.MaxCallsPerInside != conntrack.DefaultMaxCallsPerInside || l.CloseLinger != conntrack.DefaultCloseLinger {
		t.Errorf("limits %+v", l)
	}
	if n := len(rows(tbl)); n != 2 {
		t.Errorf("calls %d", n)
	}
	f.send(dirOut, ocrq(0x30))
	if in := f.send(dirIn, ocrp(0x8030, 0x30, 1)); in[16] != 2 {
		t.Errorf("new call over the new limit: result %d", in[16])
	}
}

// Requests from outside are not recorded once MaxCalls calls are pending
// (a bound on what outside peers can make the table hold): the call is
// refused, so the inside end's reply to it goes out with result 2, and
// nothing else on the connection is refused in its place.
func TestLimitPendingRequestsFromOutside(t *testing.T) {
	tbl := newTable(conntrack.Limits{MaxCalls: 2})
	res := &fakeResolver{}
	a := pnsFlow(t, tbl, res, cli1, 40001, pac1)
	a.start()
	a.send(dirOut, ocrq(1))
	a.send(dirOut, ocrq(2)) // two calls pending
	f := pacFlow(t, tbl, res, srv1, rcli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x300)) // not recorded: refused
	wantStats(t, tbl, map[string]uint64{"calls_refused": 0, "calls_pending": 2})
	out := f.send(dirOut, ocrp(0x40, 0x300, 1))
	if out[16] != 2 {
		t.Errorf("reply to a refused request: result %d, want 2", out[16])
	}
	if _, _, v := tbl.GREIn(rcli1, pub1, 0x40, 1, f.now); v == conntrack.GREForward {
		t.Errorf("refused call's GRE forwarded")
	}
	wantStats(t, tbl, map[string]uint64{"calls_refused": 1, "calls_set_up": 0})
	// The pending calls are answered; below the limit a later call of the
	// inside PAC works, and the incoming call it makes is not refused.
	a.send(dirIn, ocrp(0x101, 1, 4))
	a.send(dirIn, ocrp(0x102, 2, 4))
	f.send(dirIn, cdn(0x300))
	o := u16(f.send(dirOut, icrq(0x41)), 12)
	if in := f.send(dirIn, icrp(0x301, o, 1)); in[16] != 1 {
		t.Errorf("ICRP of a later call: result %d, want 1", in[16])
	}
	wantStats(t, tbl, map[string]uint64{"calls_refused": 1, "calls_set_up": 1})
}

// Deleting a call that is still pending on the inside end's answer makes
// it a tombstone: the answer is then refused, not set up.
func TestDeletePendingFromOutside(t *testing.T) {
	tbl := newTable(conntrack.Limits{})
	f := pacFlow(t, tbl, &fakeResolver{}, srv1, rcli1, 50000)
	f.start()
	f.send(dirIn, ocrq(0x300))
	id := "203.0.113.1/192.0.2.50/pending-768"
	if err := tbl.Delete(id, t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	out := f.send(dirOut, ocrp(0x40, 0x300, 1))
	if out[16] != 2 {
		t.Errorf("answer to a deleted request: result %d, want 2", out[16])
	}
	if _, _, v := tbl.GREIn(rcli1, pub1, 0x40, 1, f.now); v != conntrack.GRERefused {
		t.Errorf("GREIn: %v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_set_up": 0, "calls_active": 0})
	tbl.Expire(nowAt(conntrack.DefaultSetupTimeout))
	if ids := callIDs(tbl); len(ids) != 0 {
		t.Errorf("left after SetupTimeout: %v", ids)
	}
}

// A call deleted hours after its setup (its since then an offset from
// created in whole seconds) keeps its tombstone SetupTimeout from the
// deletion, not less.
func TestDeleteOldCall(t *testing.T) {
	tbl := conntrack.New(conntrack.Limits{GREIdle: 24 * time.Hour, ControlIdle: 24 * time.Hour}, &recorder{})
	f := twoCalls(t, tbl)
	id := callName(pub1, pac1, 0x10)
	del := f.now + int64(3*time.Hour+500*time.Millisecond)
	if err := tbl.Delete(id, del); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	tbl.Expire(del + int64(conntrack.DefaultSetupTimeout) - 1)
	if v := callByID(t, tbl, id); v.State != "closing" {
		t.Errorf("tombstone before SetupTimeout: state %q", v.State)
	}
	tbl.Expire(del + int64(conntrack.DefaultSetupTimeout+time.Second))
	if _, _, v := tbl.GREIn(pac1, pub1, 0x10, 1, del); v != conntrack.GREUnknown {
		t.Errorf("tombstone a second past SetupTimeout: %v", v)
	}
	wantStats(t, tbl, map[string]uint64{"calls_active": 1})
}
