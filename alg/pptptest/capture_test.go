package pptptest

import (
	"os"
	"strings"
	"testing"
)

// Every capture in testdata/pcaps is listed in its INDEX.md (source and
// licence) and reads as pcap or pcapng.
func TestCapturesIndexed(t *testing.T) {
	index := string(ReadCapture(t, "INDEX.md"))
	ents, err := os.ReadDir(CapturePath(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if name == "INDEX.md" {
			continue
		}
		n++
		if !strings.Contains(index, "| "+name+" |") {
			t.Errorf("%s is not in INDEX.md", name)
		}
		if frames, _ := Frames(t, ReadCapture(t, name)); len(frames) == 0 {
			t.Errorf("%s: no frames", name)
		}
	}
	if n == 0 {
		t.Fatal("no captures")
	}
}
