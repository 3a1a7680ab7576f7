package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	log, level, err := New("info", "json", WithOutput(&buf))
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("call refused", zap.String("peer", "203.0.113.5"))
	level.SetLevel(zapcore.DebugLevel) // what SIGHUP does
	log.Debug("now visible")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	for k, want := range map[string]string{"level": "info", "msg": "call refused", "peer": "203.0.113.5"} {
		if entry[k] != want {
			t.Errorf("%s = %v, want %q", k, entry[k], want)
		}
	}
	for _, k := range []string{"ts", "caller"} {
		if _, ok := entry[k]; !ok {
			t.Errorf("no %q in %s", k, lines[0])
		}
	}
	if !strings.Contains(lines[1], `"now visible"`) {
		t.Errorf("debug after SetLevel missing: %s", lines[1])
	}
}

func TestNewConsole(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := New("warn", "console", WithOutput(&buf))
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("rules differ", zap.Int("queue", 3))
	out := buf.String()
	if !strings.Contains(out, "WARN") || !strings.Contains(out, "rules differ") || !strings.Contains(out, `{"queue": 3}`) || strings.Contains(out, "hidden") {
		t.Errorf("console output %q", out)
	}
}

func TestNewErrors(t *testing.T) {
	if _, _, err := New("loud", "json"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("bad level: %v", err)
	}
	if _, _, err := New("info", "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("bad format: %v", err)
	}
}

// TestSampling checks that a message repeated in a burst is sampled and the hook sees the drops.
func TestSampling(t *testing.T) {
	var buf bytes.Buffer
	var dropped atomic.Int64
	log, _, err := New("info", "json", WithOutput(&buf), WithSamplerHook(func(_ zapcore.Entry, d zapcore.SamplingDecision) {
		if d&zapcore.LogDropped != 0 {
			dropped.Add(1)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		log.Info("malformed control message")
	}
	written := strings.Count(buf.String(), "\n")
	// 100 first, then one in 100 of the 900 others, unless the burst straddled a second.
	if written < 100 || written >= 1000 || int64(written)+dropped.Load() != 1000 {
		t.Errorf("written %d dropped %d of 1000", written, dropped.Load())
	}
}
