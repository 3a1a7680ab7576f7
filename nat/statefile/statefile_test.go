package statefile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type state struct {
	Version int      `json:"version"`
	Calls   []string `json:"calls"`
}

const current = 2

// dirEntries lists the names in dir, to prove no temporary file is left.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "pptpgw") // created by Write
	path := filepath.Join(dir, "state.json")

	var got state
	if found, err := Read(path, &got, current); found || err != nil {
		t.Fatalf("missing file: found %v err %v, want false, nil", found, err)
	}
	for _, want := range []state{
		{Version: 2, Calls: []string{"198.51.100.1/203.0.113.5/40001"}},
		{Version: 2, Calls: []string{"a", "b"}}, // replaces the first
	} {
		if err := Write(path, want); err != nil {
			t.Fatal(err)
		}
		got = state{}
		found, err := Read(path, &got, current)
		if !found || err != nil {
			t.Fatalf("found %v err %v", found, err)
		}
		if strings.Join(got.Calls, " ") != strings.Join(want.Calls, " ") || got.Version != want.Version {
			t.Errorf("read %+v, want %+v", got, want)
		}
	}
	if names := dirEntries(t, dir); len(names) != 1 || names[0] != "state.json" {
		t.Errorf("directory holds %q, want only state.json (no temp files)", names)
	}
	for p, want := range map[string]os.FileMode{dir: 0o750 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

// TestCrashLeftovers checks that Read clears the temporary files of a Write cut short by a crash,
// and only those.
func TestCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, state{Version: 2}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".state.json.tmp-123", ".state.json.tmp-x", "other.json", ".other.json.tmp-1"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got state
	if found, err := Read(path, &got, current); !found || err != nil {
		t.Fatalf("found %v err %v", found, err)
	}
	if names := strings.Join(dirEntries(t, dir), " "); names != ".other.json.tmp-1 other.json state.json" {
		t.Errorf("directory holds %q", names)
	}
}

// TestOlderVersion checks that an older file is handed to the caller to migrate.
func TestOlderVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Write(path, state{Version: 1, Calls: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	var got state
	if found, err := Read(path, &got, current); !found || err != nil || got.Version != 1 {
		t.Errorf("found %v err %v state %+v", found, err, got)
	}
}

func TestBadFile(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		reason string
	}{
		{name: "corrupt", body: `{"version": 2, "calls": [`, reason: "not valid JSON"},
		{name: "truncated to nothing", body: "", reason: "not valid JSON"},
		{name: "trailing garbage", body: `{"version": 2} {}`, reason: "not valid JSON"},
		{name: "not an object", body: `[1, 2]`, reason: "not a JSON object but array"},
		{name: "no version", body: `{"calls": []}`, reason: `no "version"`},
		{name: "null", body: `null`, reason: `no "version"`},
		{name: "version string", body: `{"version": "2"}`, reason: `"version" "2" is not an integer`},
		{name: "version zero", body: `{"version": 0}`, reason: "version 0 is not positive"},
		{name: "newer version", body: `{"version": 3, "calls": ["a"]}`, reason: "version 3 is newer than 2"},
		{name: "wrong shape", body: `{"version": 2, "calls": "a"}`, reason: "does not decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			var got state
			found, err := Read(path, &got, current)
			var bad *BadFileError
			if found || !errors.As(err, &bad) {
				t.Fatalf("found %v err %v, want a *BadFileError", found, err)
			}
			if !strings.Contains(bad.Reason, tt.reason) || bad.Path != path || bad.BadPath != path+".bad" {
				t.Errorf("BadFileError %+v, want reason %q", bad, tt.reason)
			}
			if !strings.HasPrefix(err.Error(), "state file "+path+": ") || !strings.HasSuffix(err.Error(), "(kept as "+path+".bad)") {
				t.Errorf("message %q", err)
			}
			if names := dirEntries(t, dir); len(names) != 1 || names[0] != "state.json.bad" {
				t.Errorf("directory holds %q, want only state.json.bad", names)
			}
			if b, _ := os.ReadFile(path + ".bad"); string(b) != tt.body {
				t.Errorf(".bad holds %q, want the original %q", b, tt.body)
			}
			// The next start finds no file and starts empty.
			if found, err := Read(path, &got, current); found || err != nil {
				t.Errorf("after moving aside: found %v err %v", found, err)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A regular file where the directory should be fails for root too.
	path := filepath.Join(blocker, "state.json")
	if err := Write(path, state{Version: 1}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("unwritable directory: %v, want an error naming %s", err, path)
	}

	path = filepath.Join(dir, "state.json")
	for _, v := range []any{
		map[string]int{"calls": 1},                   // no version
		struct{ Version int }{0},                     // "Version", not "version"
		map[string]any{"version": 1, "f": func() {}}, // does not marshal
	} {
		if err := Write(path, v); err == nil || !strings.HasPrefix(err.Error(), "state file "+path+": ") {
			t.Errorf("Write(%T) = %v, want an error", v, err)
		}
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only the blocker", names)
	}
}

func TestWriteReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to a read-only directory")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	path := filepath.Join(dir, "state.json")
	err := Write(path, state{Version: 1})
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrPermission) {
		t.Errorf("read-only directory: %v, want a permission error naming %s", err, path)
	}
}

func TestReadPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads anything")
	}
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"version":1}`), 0o000); err != nil {
		t.Fatal(err)
	}
	var got state
	found, err := Read(path, &got, current)
	var bad *BadFileError
	if found || err == nil || errors.As(err, &bad) {
		t.Errorf("found %v err %v, want a plain error (the file is not at fault)", found, err)
	}
	if _, serr := os.Stat(path); serr != nil {
		t.Errorf("file was moved: %v", serr)
	}
}

func TestLeadingVersion(t *testing.T) {
	for _, tc := range []struct {
		data string
		ok   bool
	}{
		{`{"version":1}`, true},
		{`{"version":12,"conns":[]}`, true},
		{`{"version":0}`, false},
		{`{"version":01}`, false},
		{`{"version":-1}`, false},
		{`{"version":"1"}`, false},
		{`{"version":1`, false},
		{`{"version":1.5}`, false},
		{`{"conns":[],"version":1}`, false},
		{`[{"version":1}]`, false},
	} {
		if err := leadingVersion([]byte(tc.data)); (err == nil) != tc.ok {
			t.Errorf("leadingVersion(%s) = %v, want ok %v", tc.data, err, tc.ok)
		}
	}
}

// WriteStream writes what its encoder writes as Write writes its own
// encoding: the same bytes and newline, however the encoder cuts its
// writes; a document without a leading version, or an encoder's error,
// leaves the file as it was and no temporary file.
func TestWriteStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	doc := `{"version":2,"calls":["a"]}`
	for _, chunk := range []int{1, 3, len(doc)} {
		os.Remove(path)
		err := WriteStream(path, func(w io.Writer) error {
			for i := 0; i < len(doc); i += chunk {
				if _, err := w.Write([]byte(doc[i:min(i+chunk, len(doc))])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != doc+"\n" {
			t.Fatalf("writes of %d bytes: file %q %v, want %q", chunk, got, err, doc+"\n")
		}
	}
	if err := Write(path, state{Version: 2, Calls: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != doc+"\n" {
		t.Errorf("Write wrote %q, WriteStream %q", got, doc+"\n")
	}
	failed := errors.New("encoder failed")
	for _, enc := range []func(io.Writer) error{
		func(w io.Writer) error { _, err := io.WriteString(w, `{"calls":[],"version":2}`); return err },
		func(w io.Writer) error { _, err := io.WriteString(w, `{"version":0}`); return err },
		func(w io.Writer) error { io.WriteString(w, `{"version":3,`); return failed },
	} {
		if err := WriteStream(path, enc); err == nil {
			t.Error("WriteStream: no error")
		}
		if got, _ := os.ReadFile(path); string(got) != doc+"\n" {
			t.Errorf("a failed write changed the file to %q", got)
		}
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only state.json", names)
	}
}
