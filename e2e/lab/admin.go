//go:build linux

package lab

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// LiveHeap returns the daemon's live Go heap: HeapAlloc right after a
// garbage collection, which GET /debug/pprof/heap?gc=1 runs first; the
// least of five readings 300 ms apart, since a state-file snapshot being
// encoded at that moment is live too.
func (g *Gateway) LiveHeap() (uint64, error) {
	least := uint64(0)
	for i := range 5 {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		body, err := g.adminGet("/debug/pprof/heap?gc=1&debug=1")
		if err != nil {
			return 0, err
		}
		_, v, ok := strings.Cut(body, "\n# HeapAlloc = ")
		if !ok {
			return 0, fmt.Errorf("heap profile without HeapAlloc")
		}
		v, _, _ = strings.Cut(v, "\n")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("HeapAlloc: %w", err)
		}
		if i == 0 || n < least {
			least = n
		}
	}
	return least, nil
}

// HeapProfile writes the daemon's heap profile (pprof format, after a GC)
// to file, for `go tool pprof -sample_index=inuse_space`.
func (g *Gateway) HeapProfile(file string) error {
	body, err := g.adminGet("/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	return os.WriteFile(file, []byte(body), 0o644)
}

// CPUProfile writes the daemon's CPU profile over the next seconds to file.
func (g *Gateway) CPUProfile(file string, seconds int) error {
	body, err := g.adminGet(fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds))
	if err != nil {
		return err
	}
	return os.WriteFile(file, []byte(body), 0o644)
}

// adminGet GETs path and returns the body; a status other than 200 is an
// error.
func (g *Gateway) adminGet(path string) (string, error) {
	code, body, err := g.adminDo(path)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s", path, code, http.StatusText(code))
	}
	return body, nil
}

// Goroutines returns the daemon's goroutine count (GET
// /debug/pprof/goroutine?debug=1: "goroutine profile: total N").
func (g *Gateway) Goroutines() (int, error) {
	body, err := g.adminGet("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(body, "\n")
	v, ok := strings.CutPrefix(line, "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts %q", line)
	}
	return strconv.Atoi(strings.TrimSpace(v))
}

// OpenFDs counts the daemon's open file descriptors (/proc/PID/fd).
func (g *Gateway) OpenFDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.Pid()))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}
