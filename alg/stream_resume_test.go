package alg

import (
	"bytes"
	"testing"
)

// TestStreamResume: a tracker restored at a position older than its
// stream sees the next segment beyond a gap; Resume moves it there and the
// walk goes on, finding the next header by its cookie when the segment
// starts inside a message. Resume at or before the position does nothing.
func TestStreamResume(t *testing.T) {
	in, want, starts := expect(testStream)
	for _, tc := range []struct {
		name string
		from int // where the tracker resumes (the stream before it passed unseen)
		skip int // bytes left untouched (the rest of a message cut by from)
	}{
		{"at a message", ocrpTo, 0},
		{"inside a message", ocrpTo + 5, starts[5] - ocrpTo - 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConn(t, 1000, false)
			c.walk(in[:ocrqAt])
			saved := c.s.State()
			c.send(in, ocrqAt, tc.from, false) // walked, then the daemon died before writing

			r := newConn(t, 1000, true)
			r.s.SetState(saved)
			if _, res := r.send(in, tc.from, len(in), false); !res.Gap {
				t.Fatalf("segment beyond the saved position: %+v, want a gap", res)
			}
			r.s.Resume(r.seq(ocrqAt)) // not beyond: nothing
			if r.s.Next() != saved.Next {
				t.Fatalf("Resume before the position moved it to %d", r.s.Next())
			}
			r.s.Resume(r.seq(tc.from))
			out, res := r.send(in, tc.from, len(in), false)
			if res.Gap {
				t.Fatalf("after Resume: %+v", res)
			}
			exp := append(append([]byte(nil), in[tc.from:tc.from+tc.skip]...), want[tc.from+tc.skip:]...)
			if !bytes.Equal(out, exp) {
				t.Errorf("after Resume at %d: output differs from the rewritten stream", tc.from)
			}
			if len(r.h.errs) > 0 {
				t.Errorf("handler: %v", r.h.errs)
			}
		})
	}
}
