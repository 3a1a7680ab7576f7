package alg

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var writeCorpus = flag.Bool("write-corpus", false, "write the golden seed corpora to testdata/fuzz")

// corpusEntry renders values in the "go test fuzz v1" file format.
func corpusEntry(vals ...any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		default:
			panic(fmt.Sprintf("corpusEntry: %T", v))
		}
	}
	return b.String()
}

// goldenCorpus is the seed corpus written from the golden packets, by
// fuzz target and entry name.
func goldenCorpus() map[string]map[string]string {
	c := map[string]map[string]string{"FuzzParseCtrl": {}, "FuzzParseGRE": {}, "FuzzStream": {},
		"FuzzStreamRetrans": {}, "FuzzStreamState": {}}
	for typ := SCCRQ; typ <= SLI; typ++ {
		g := goldenCtrl[typ]
		c["FuzzParseCtrl"]["golden_"+typ.String()] = corpusEntry(g)
		c["FuzzStream"]["golden_"+typ.String()] = corpusEntry(uint32(typ), false, concat(g, g), []byte{14, 1, byte(len(g) - 13)})
	}
	for name, b := range map[string][]byte{
		"two_messages":   concat(goldenOCRQ, goldenOCRP),
		"bad_cookie":     setU16(goldenOCRP, 6, 0x3c4e),
		"management":     setU16(goldenOCRP, 2, 2),
		"type_16":        setU16(goldenOCRP, 8, 16),
		"length_0":       setU16(goldenOCRP, 0, 0),
		"length_65535":   setU16(goldenOCRP, 0, 65535),
		"truncated_body": goldenOCRP[:31],
	} {
		c["FuzzParseCtrl"][name] = corpusEntry(b)
	}
	for name, b := range map[string][]byte{
		"golden_both": greBoth, "golden_seq": greSeqOnly, "golden_ack": greAckOnly,
		"golden_neither": greNeither, "golden_padded": grePadded,
		"v0":         setU16(greBoth, 0, 0x3000),
		"checksum_C": setU16(greBoth, 0, 0xb081),
		"proto_ipv4": setU16(greBoth, 2, 0x0800),
		"truncated":  greBoth[:15],
	} {
		c["FuzzParseGRE"][name] = corpusEntry(b)
	}
	in, _, _ := expect(testStream)
	c["FuzzStream"]["stream_call_id_split"] = corpusEntry(uint32(0xffffffff-(ocrqAt+13)), false, in,
		[]byte{156, 156, 13, 1, 154, 14, 1, 1, 1, 1})
	c["FuzzStream"]["stream_mid"] = corpusEntry(uint32(7), true, in[ocrqAt+5:], []byte{3, 200, 5})
	c["FuzzStreamRetrans"]["stream_resend"] = corpusEntry(uint32(1), false, in,
		[]byte{200, 120, 13, 3, 60, 80}, []byte{20, 40, 1, 1, 100, 200, 3, 255})
	for _, fc := range framingCases {
		in, _, _ := expect(fc.ps)
		c["FuzzStream"]["framing_"+fc.name] = corpusEntry(uint32(0xfffffff0), false, in, []byte{5, 9, 1, 30})
		c["FuzzStreamRetrans"]["framing_"+fc.name] = corpusEntry(uint32(9), false, in, []byte{17, 40}, []byte{30, 30, 5, 2})
	}
	for name, st := range damagedStates() {
		c["FuzzStreamState"]["damaged_"+name] = corpusEntry(st.Started, st.InSync, st.FinSeen, st.Next, st.MsgStart,
			st.MsgBytes, st.Wrote, uint16(13), in)
	}
	return c
}

// TestWriteFuzzCorpus writes the golden seeds with -write-corpus, and
// otherwise checks that the committed files are there and up to date.
func TestWriteFuzzCorpus(t *testing.T) {
	for target, entries := range goldenCorpus() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *writeCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, content := range entries {
			path := filepath.Join(dir, name)
			if *writeCorpus {
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != content {
				t.Errorf("%s missing or out of date (go test -run TestWriteFuzzCorpus -write-corpus): %v", path, err)
			}
		}
	}
}
