package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Health statuses of HealthBody.
const (
	HealthOK   = "ok"
	HealthFail = "fail"
)

// HealthBody is the answer of GET /healthz: 200 with status "ok" and no problems when every part
// works, 503 with status "fail" and what is wrong otherwise. Live is false when a problem is one
// a restart cures (the systemd watchdog and `pptpgw health --live` act on it).
type HealthBody struct {
	Status   string          `json:"status"`
	Live     bool            `json:"live"`
	Problems []HealthProblem `json:"problems"`
}

// HealthProblem is one part that does not work as configured: part is queues, rules, fast-path,
// state-file, call-table or events.
type HealthProblem struct {
	Part    string `json:"part"`
	Detail  string `json:"detail"`
	Restart bool   `json:"restart"`
}

// HealthChecker is a Backend that judges its own health; a Backend without it is always healthy.
type HealthChecker interface {
	Health() []HealthProblem
}

// NewHealthBody sums problems up.
func NewHealthBody(problems []HealthProblem) HealthBody {
	b := HealthBody{Status: HealthOK, Live: true, Problems: problems}
	if b.Problems == nil {
		b.Problems = []HealthProblem{}
	}
	for _, p := range problems {
		b.Status = HealthFail
		if p.Restart {
			b.Live = false
		}
	}
	return b
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	var problems []HealthProblem
	if hc, ok := s.backend.(HealthChecker); ok {
		problems = hc.Health()
	}
	b := NewHealthBody(problems)
	code := http.StatusOK
	if b.Status != HealthOK {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, b)
}

// Health asks GET /healthz: the raw body and its decoding, for a 200 and a 503 alike.
func (c *Client) Health(ctx context.Context) (raw []byte, body HealthBody, err error) {
	raw, err = c.do(ctx, http.MethodGet, "/healthz")
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusServiceUnavailable {
		raw, err = se.body, nil
	}
	if err != nil {
		return nil, HealthBody{}, err
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.Status == "" {
		return nil, HealthBody{}, fmt.Errorf("admin socket %s: GET /healthz: bad answer: %.100q", c.path, raw)
	}
	return raw, body, nil
}

// PrintHealth writes the body for a human: "ok", or "fail" and one line per problem.
func PrintHealth(w io.Writer, b HealthBody) {
	if b.Status == HealthOK {
		fmt.Fprintln(w, "ok")
		return
	}
	live := ""
	if !b.Live {
		live = " (a restart is due)"
	}
	fmt.Fprintf(w, "fail: %d problems%s\n", len(b.Problems), live)
	for _, p := range b.Problems {
		fmt.Fprintf(w, "  %-11s %s\n", p.Part, strings.TrimSpace(p.Detail))
	}
}
