package nfq

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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

// The bind is one request asking for an acknowledgement: the command, the
// whole-packet copy mode, the backlog, and the flags under their mask.
func TestBindMessage(t *testing.T) {
	m := bindMessage(0x1234, Config{MaxQueueLen: 77, FailOpen: true})
	if m.Header.Type != nfqnlMsgConfig || m.Header.Flags != netlink.Request|netlink.Acknowledge || m.Header.Sequence != bindSeq {
		t.Fatalf("header %+v", m.Header)
	}
	if !bytes.Equal(m.Data[:4], []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0x12, 0x34}) {
		t.Fatalf("nfgenmsg %x", m.Data[:4])
	}
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16]string{}
	for _, a := range attrs {
		got[a.Type] = fmt.Sprintf("%x", a.Data)
	}
	want := map[uint16]string{
		nfqaCfgCmd:         "01000002",
		nfqaCfgParams:      "0000ffff02",
		nfqaCfgQueueMaxLen: "0000004d",
		nfqaCfgMask:        "00000007",
		nfqaCfgFlags:       "00000001",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("attributes (-want +got):\n%s", d)
	}
	m = bindMessage(1, Config{})
	if a, _ := netlink.UnmarshalAttributes(m.Data[4:]); fmt.Sprintf("%x", a[4].Data) != "00000000" {
		t.Errorf("flags without fail-open: %x", a[4].Data)
	}
}
