package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// SettingsSource is a Backend that tells its effective settings (GET
// /v1/config): option name to value as a user would write it, what
// `pptpgw check` compares the installed rules with.
type SettingsSource interface {
	Settings() map[string]string
}

func (s *Server) handleConfig(w http.ResponseWriter, _ *http.Request) {
	src, ok := s.backend.(SettingsSource)
	if !ok {
		writeError(w, http.StatusNotFound, "this daemon does not tell its settings")
		return
	}
	writeJSON(w, http.StatusOK, src.Settings()) // keys sorted by encoding/json
}

// Settings returns the daemon's effective settings (GET /v1/config).
func (c *Client) Settings(ctx context.Context) (map[string]string, error) {
	raw, err := c.do(ctx, http.MethodGet, "/v1/config")
	if err != nil {
		return nil, err
	}
	var s map[string]string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("admin socket %s: GET /v1/config: bad answer: %w", c.path, err)
	}
	return s, nil
}
