package pptptest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// CaptureDir is where the real captures live, from the module root; their
// sources and licences are in its INDEX.md.
const CaptureDir = "testdata/pcaps"

// CapturePath returns the path of capture name in the repository's
// testdata/pcaps ("" for the directory itself). A missing capture fails
// the test: the captures are part of the repository, so a clone that lacks
// one is broken, not a reason to test less.
func CapturePath(t testing.TB, name string) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("captures: %v", err)
	}
	p := filepath.Join(root, CaptureDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("capture %s missing from the repository: %v", filepath.Join(CaptureDir, name), err)
	}
	return p
}

// ReadCapture returns the bytes of capture name, failing the test when it
// is missing.
func ReadCapture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ModuleRoot walks up from the working directory (go test runs a test in
// its package's directory) to the directory holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Frame is one captured frame: its link-layer bytes and timestamp.
type Frame struct {
	TS   time.Time
	Data []byte
}

// Frames reads a pcap or pcapng (told apart by the first four bytes) and
// returns its frames and link type.
func Frames(t testing.TB, b []byte) ([]Frame, layers.LinkType) {
	t.Helper()
	type reader interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var r reader
	var lt layers.LinkType
	if len(b) >= 4 && binary.BigEndian.Uint32(b) == 0x0A0D0D0A { // pcapng Section Header Block
		ng, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("pcapng: %v", err)
		}
		r, lt = ng, ng.LinkType()
	} else {
		pr, err := pcapgo.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("pcap: %v", err)
		}
		r, lt = pr, pr.LinkType()
	}
	var frames []Frame
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, lt
		}
		if err != nil {
			t.Fatalf("read packet %d: %v", len(frames)+1, err)
		}
		frames = append(frames, Frame{TS: ci.Timestamp, Data: data})
	}
}

// Serialize builds a packet from gopacket layers with lengths and
// checksums computed, panicking on error (the layers are the test's own).
func Serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}
