package nfq

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// As printed by kernel 6.18 with queues 0 and 1 bound ("%5u %6u %5u %1u
// %5u %5u %5u %8u %2d"), including counters near the 32-bit limit.
const procSample = `    0 3521441385     0 2 65535     0     0       17  1
    1  -4123     3 2 65535    12 4294967295 4294967295  1
`

func TestReadProcStats(t *testing.T) {
	_, err := ReadProcStats(strings.NewReader(procSample))
	if err == nil {
		t.Fatal("negative port id accepted")
	}
	good := strings.Replace(procSample, "-4123", "4123", 1)
	got, err := ReadProcStats(strings.NewReader(good + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []QueueStats{
		{Queue: 0, PortID: 3521441385, CopyMode: 2, CopyRange: 65535, IDSequence: 17},
		{Queue: 1, PortID: 4123, Waiting: 3, CopyMode: 2, CopyRange: 65535, QueueDropped: 12,
			UserDropped: 4294967295, IDSequence: 4294967295},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ReadProcStats (-want +got):\n%s", d)
	}
	if got, err := ReadProcStats(strings.NewReader("")); err != nil || len(got) != 0 {
		t.Errorf("empty file = %v, %v", got, err)
	}
	for _, bad := range []string{"0 1 2 3\n", "70000 1 0 2 65535 0 0 1 1\n", "0 1 0 x 65535 0 0 1 1\n"} {
		if _, err := ReadProcStats(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadProcStats(%q) accepted", bad)
		}
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Accept: "accept", Drop: "drop", 7: "verdict(7)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", v, got, want)
		}
	}
}

func TestOpenRejectsRange(t *testing.T) {
	h := func(uint16, []byte, uint32, Meta) (Verdict, uint32, bool) { return Accept, 0, false }
	if _, err := Open(t.Context(), Config{Queue: 65535, Queues: 2}, h); err == nil {
		t.Error("queues 65535..65536 accepted")
	}
	if _, err := Open(t.Context(), Config{}, nil); err == nil {
		t.Error("nil handler accepted")
	}
}
