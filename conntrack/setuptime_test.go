package conntrack_test

import (
	"testing"
	"time"

	"github.com/pptpgw/pptpgw/conntrack"
)

// The table tells when a call was requested (Created) and set up (SetUp),
// for the setup latency metric: from the request seen, both ways round;
// a call not set up yet has no SetUp.
func TestSetUpTime(t *testing.T) {
	for _, tt := range []struct {
		name string
		run  func(tbl *conntrack.Table) *flow
	}{
		{"pns inside", func(tbl *conntrack.Table) *flow {
			f := pnsFlow(t, tbl, &fakeResolver{}, cli1, 40001, pac1)
			f.start()
			out := f.send(dirOut, ocrq(0x0040))
			f.advance(250 * time.Millisecond)
			f.send(dirIn, ocrp(0x4711, u16(out, 12), 1))
			return f
		}},
		{"pac inside", func(tbl *conntrack.Table) *flow {
			f := pacFlow(t, tbl, &fakeResolver{}, srv1, rcli1, 50000)
			f.start()
			f.send(dirIn, ocrq(0x0777))
			f.advance(250 * time.Millisecond)
			f.send(dirOut, ocrp(0x0040, 0x0777, 1))
			return f
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tbl := newTable(conntrack.Limits{})
			f := tt.run(tbl)
			calls := tbl.Calls()
			if len(calls) != 1 {
				t.Fatalf("%d calls", len(calls))
			}
			c := calls[0]
			if c.State != conntrack.StateEstablished || c.SetUp != f.now || time.Duration(c.SetUp-c.Created) != 250*time.Millisecond {
				t.Errorf("call %s: created %d set up %d (now %d)", c.State, c.Created, c.SetUp, f.now)
			}
		})
	}
}
