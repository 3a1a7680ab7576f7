// Package statefile reads and writes pptpgw's versioned JSON state file atomically: a reader
// (the next daemon start) sees either the previous complete file or the new complete file, never
// a torn one, even across a crash or power loss.
package statefile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// dirMode is the mode of a state directory Write creates: the state names inside hosts and
// their peers, which is nobody else's business.
const dirMode = 0o750

// BadFileError is returned by Read for a state file that exists but cannot be used: corrupt
// JSON, no version, or a version newer than this binary knows. The file has been renamed to
// BadPath (NAME.bad) so that it is kept for a post-mortem and the next snapshot does not
// overwrite it; the caller logs a warning and starts with empty state.
type BadFileError struct {
	Path    string // the state file
	BadPath string // where it was moved; "" if the rename failed (see RenameErr)
	Reason  string // why it is unusable, e.g. "version 3 is newer than 2"
	// Err is the decoding error behind Reason, if any.
	Err error
	// RenameErr is why the file could not be moved aside; nil when BadPath is set.
	RenameErr error
}

func (e *BadFileError) Error() string {
	if e.RenameErr != nil {
		return fmt.Sprintf("state file %s: %s (could not move it aside: %v)", e.Path, e.Reason, e.RenameErr)
	}
	return fmt.Sprintf("state file %s: %s (kept as %s)", e.Path, e.Reason, e.BadPath)
}

func (e *BadFileError) Unwrap() error { return e.Err }

// Write marshals v to JSON and replaces path with it atomically: it writes a temporary file in
// the same directory, fsyncs it, renames it over path and fsyncs the directory, so the rename
// itself survives a crash. The directory is created (mode 0750) if missing; the file is 0600.
// v must marshal to a JSON object whose first member is a positive integer "version" (the
// first field of a struct), or Write fails without touching path. No temporary file is left behind, on success or failure (a crash can
// leave one; Read removes it). Concurrent Writes to one path are safe: the last rename wins.
func Write(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state file %s: encode: %w", path, err)
	}
	if err := leadingVersion(data); err != nil {
		return fmt.Errorf("state file %s: refusing to write: %w", path, err)
	}
	return replace(path, func(tmp *os.File) error {
		// The newline apart: appending it would copy megabytes.
		_, err := tmp.Write(data)
		if err == nil {
			_, err = tmp.Write([]byte{'\n'})
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", tmp.Name(), err)
		}
		return nil
	})
}

// WriteStream is Write of a document encode writes into w, a buffered
// writer onto the temporary file, so that the document is never whole in
// memory: the same check of its leading "version" (on what encode wrote
// first), the same atomic replacement, a newline added.
func WriteStream(path string, encode func(w io.Writer) error) error {
	return replace(path, func(tmp *os.File) error {
		bw := bufio.NewWriterSize(tmp, streamBuf)
		h := headWriter{w: bw}
		if err := encode(&h); err != nil {
			return fmt.Errorf("write %s: %w", tmp.Name(), err)
		}
		if err := leadingVersion(h.head); err != nil {
			return fmt.Errorf("refusing to write: %w", err)
		}
		if err := bw.WriteByte('\n'); err != nil {
			return fmt.Errorf("write %s: %w", tmp.Name(), err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", tmp.Name(), err)
		}
		return nil
	})
}

// streamBuf is WriteStream's buffer: a few dozen writes for a 10 000-call
// table.
const streamBuf = 64 << 10

// headWriter keeps the first bytes written through it, for leadingVersion.
type headWriter struct {
	w    io.Writer
	head []byte
}

func (h *headWriter) Write(p []byte) (int, error) {
	if n := 64 - len(h.head); n > 0 {
		h.head = append(h.head, p[:min(n, len(p))]...)
	}
	return h.w.Write(p)
}

// replace writes path's new content into a temporary file beside it with
// fill, then fsyncs it, renames it over path and fsyncs the directory.
func replace(path string, fill func(tmp *os.File) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	// Until the rename succeeds the temp file is ours to remove.
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("state file %s: fsync %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file %s: close %s: %w", path, tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("state file %s: fsync directory: %w", path, err)
	}
	return nil
}

// Read decodes the state file at path into v. A missing file is (false, nil): a first start.
// A file that is not JSON, has no positive "version", has a version above currentVersion, or
// does not decode into v is moved to path+".bad" and reported as a *BadFileError, with found
// false and v possibly partly filled, so the caller must start from a fresh value. Any other
// error (permission denied, say) is returned as is and leaves the file alone: it is not the
// file's fault. An older version is decoded into v as it is; migrating is the caller's job.
// Read also removes temporary files a Write interrupted by a crash left beside path; call it
// before the first Write.
func Read(path string, v any, currentVersion int) (found bool, err error) {
	removeTemps(path)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state file %s: %w", path, err)
	}
	ver, err := version(data)
	if err != nil {
		return false, moveAside(path, err.Error(), err)
	}
	if ver > currentVersion {
		return false, moveAside(path, fmt.Sprintf("version %d is newer than %d, written by a later pptpgw", ver, currentVersion), nil)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, moveAside(path, "does not decode: "+err.Error(), err)
	}
	return true, nil
}

// leadingVersion checks that data, as json.Marshal wrote it (no spaces), starts with a
// positive integer "version" member: what version accepts, without parsing the whole
// document again (a 10 000-call table is megabytes, written several times a second while
// calls are set up).
func leadingVersion(data []byte) error {
	rest, ok := bytes.CutPrefix(data, []byte(`{"version":`))
	if !ok {
		return errors.New(`no leading "version" member`)
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || rest[0] == '0' || n == len(rest) || (rest[n] != ',' && rest[n] != '}') {
		return errors.New(`"version" is not a positive integer`)
	}
	return nil
}

// version returns the "version" of a JSON document, or why it has none.
func version(data []byte) (int, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return 0, fmt.Errorf("not a JSON object but %s", te.Value)
		}
		return 0, fmt.Errorf("not valid JSON: %w", err)
	}
	raw, ok := top["version"]
	if !ok {
		return 0, errors.New(`no "version"`)
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf(`"version" %s is not an integer`, raw)
	}
	if v < 1 {
		return 0, fmt.Errorf("version %d is not positive", v)
	}
	return v, nil
}

// moveAside renames path to path.bad, replacing an older .bad: the newest bad file is the one
// worth looking at.
func moveAside(path, reason string, cause error) error {
	e := &BadFileError{Path: path, Reason: reason, Err: cause}
	bad := path + ".bad"
	if err := os.Rename(path, bad); err != nil {
		e.RenameErr = err
	} else {
		e.BadPath = bad
		_ = syncDir(filepath.Dir(path)) // best effort: the file is unusable either way
	}
	return e
}

// tempPattern is the os.CreateTemp pattern of path's temporary files: hidden, and named after
// the state file so that nothing else in the directory matches.
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// removeTemps deletes the temporary files of path, best effort: they are garbage either way.
func removeTemps(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	for _, m := range matches {
		os.Remove(m)
	}
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
