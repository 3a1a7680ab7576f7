package admin

import (
	"strings"
	"testing"
	"time"
)

func TestPrintCalls(t *testing.T) {
	now := t0.Add(2*time.Hour + 5*time.Minute + 3*time.Second)
	var b strings.Builder
	calls := sampleCalls()
	for i := range calls {
		if calls[i].ID == "198.51.100.1/203.0.113.5/40001" {
			calls[i].Auth, calls[i].MPPE = "mschapv2", "128-bit stateless"
		}
	}
	if err := printCalls(&b, calls, now); err != nil {
		t.Fatal(err)
	}
	want := `ID                                   STATE        ROLE        INSIDE            PUBLIC              PEER             AGE   IDLE  PKTS-IN  PKTS-OUT  BYTES-IN  BYTES-OUT  AUTH      MPPE
198.51.100.1/203.0.113.5/256         pending      pns-inside  192.168.1.11:256  198.51.100.1:256    203.0.113.5:-    2h5m  2h5m  0        0         0         0          -         -
198.51.100.1/203.0.113.5/40001       established  pns-inside  192.168.1.10:0    198.51.100.1:40001  203.0.113.5:555  2h5m  2h4m  10       12        1000      1200       mschapv2  128-bit-stateless
198.51.100.1/203.0.113.9/pending-77  pending      pac-inside  192.168.1.20:-    198.51.100.1:-      203.0.113.9:77   2h5m  2h5m  0        0         0         0          -         -
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	b.Reset()
	if err := PrintCalls(&b, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasPrefix(got, "ID  STATE  ROLE") || strings.Count(got, "\n") != 1 {
		t.Errorf("empty table %q, want the header only", got)
	}
}

func TestSince(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Minute, "0s"}, // clock skew
		{42*time.Second + 400*time.Millisecond, "42s"},
		{12*time.Minute + 5*time.Second, "12m5s"},
		{4*time.Hour + 12*time.Minute + 59*time.Second, "4h12m"}, // truncated, like uptime
		{76 * time.Hour, "3d4h"},
	} {
		if got := since(t0.Add(tt.d), t0); got != tt.want {
			t.Errorf("since(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := since(t0, time.Time{}); got != "-" {
		t.Errorf("zero time: %q", got)
	}
}

func TestPrintStats(t *testing.T) {
	var b strings.Builder
	if err := PrintStats(&b, map[string]uint64{"uptime_seconds": 90, "calls_active": 3, "gre_dropped_unknown_call": 12}); err != nil {
		t.Fatal(err)
	}
	want := "calls_active              3\ngre_dropped_unknown_call  12\nuptime_seconds            90\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
