//go:build linux

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Health is the body of GET /healthz (README "Health").
type Health struct {
	Status   string `json:"status"`
	Live     bool   `json:"live"`
	Problems []struct {
		Part    string `json:"part"`
		Detail  string `json:"detail"`
		Restart bool   `json:"restart"`
	} `json:"problems"`
	Code int `json:"-"` // the HTTP status
}

func (h Health) String() string {
	var s []string
	for _, p := range h.Problems {
		s = append(s, p.Part+": "+p.Detail)
	}
	return fmt.Sprintf("%d %s live=%v [%s]", h.Code, h.Status, h.Live, strings.Join(s, "; "))
}

// Has tells whether a problem of part is reported.
func (h Health) Has(part string) bool {
	for _, p := range h.Problems {
		if p.Part == part {
			return true
		}
	}
	return false
}

// Health asks GET /healthz: 200 and 503 both decode.
func (g *Gateway) Health() (Health, error) {
	code, body, err := g.adminDo("/healthz")
	if err != nil {
		return Health{}, err
	}
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Status == "" {
		return Health{}, fmt.Errorf("GET /healthz: %d %q", code, body)
	}
	h.Code = code
	if (code == http.StatusOK) != (h.Status == "ok") {
		return h, fmt.Errorf("GET /healthz: status %d with %q", code, h.Status)
	}
	return h, nil
}

// Live returns nil when the daemon answers and nothing it reports asks
// for a restart (`pptpgw health --live`).
func (g *Gateway) Live() error {
	h, err := g.Health()
	if err != nil {
		return err
	}
	if !h.Live {
		return fmt.Errorf("GET /healthz: not live: %s", h)
	}
	return nil
}

// Metrics returns GET /metrics of the admin socket.
func (g *Gateway) Metrics() (string, error) { return g.adminGet("/metrics") }

// adminDo GETs path and returns the status and body whatever the status.
func (g *Gateway) adminDo(path string) (int, string, error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", g.AdminSocket)
		}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://pptpgw" + path)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, string(body), nil
}
