package ppp

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Status is the JSON a lab peer writes to its --status file: the counters of
// its PPP link (for pptpcli: the sum over its calls), plus per-call detail
// from pptpcli.
type Status struct {
	Counters
	PID int `json:"pid"`
	// Control is pptpcli's control connection state: "connecting",
	// "established", "closing", "closed".
	Control string       `json:"control,omitempty"`
	SLIRecv uint64       `json:"sli_recv,omitempty"`
	CDNRecv uint64       `json:"cdn_recv,omitempty"`
	Calls   []CallStatus `json:"calls,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// CallStatus is one pptpcli call.
type CallStatus struct {
	Counters
	CallID     uint16 `json:"call_id"`
	PeerCallID uint16 `json:"peer_call_id"`
	// State: "requested", "established", "failed" (OCRP result != 1),
	// "disconnected" (CDN seen), "cleared" (we sent CCRQ).
	State      string `json:"state"`
	ResultCode uint8  `json:"result_code,omitempty"`
	GREIn      uint64 `json:"gre_in"`
	GREOut     uint64 `json:"gre_out"`
}

// WriteStatus writes v as JSON to path atomically (temp file in the same
// directory, then rename), so a reader never sees a half-written file.
func WriteStatus(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename status: %w", err)
	}
	return nil
}

// ReadStatus reads a status file written by WriteStatus.
func ReadStatus(path string) (Status, error) {
	var s Status
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode status %s: %w", path, err)
	}
	return s, nil
}
