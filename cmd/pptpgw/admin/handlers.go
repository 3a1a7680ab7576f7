package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// adminHandler routes the unix-socket API. The method-qualified patterns make ServeMux answer
// 405 (with Allow) for a known path and another method, and 404 for unknown paths.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/calls", s.handleCalls)
	mux.HandleFunc("DELETE /v1/calls/{public}/{peer}/{outer}", s.handleDeleteCall)
	mux.HandleFunc("GET /v1/stats", s.handleStats)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		if h, ok := s.backend.(Healther); ok {
			if line := h.Health(); line != "" {
				io.WriteString(w, line+"\n")
			}
		}
	})
	// Go's profiles, on the unix socket only: heap per call, CPU under
	// load (profile?seconds= below the write timeout), goroutines.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	return limitBody(mux)
}

// handleCalls writes CallsBody, calls sorted by id and never null, so the output of
// `pptpgw calls --json` is stable and diffable.
func (s *Server) handleCalls(w http.ResponseWriter, _ *http.Request) {
	calls := slices.Clone(s.backend.Calls())
	if calls == nil {
		calls = []CallView{}
	}
	slices.SortFunc(calls, func(a, b CallView) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, CallsBody{Calls: calls})
}

// handleStats writes the backend's counters plus uptime_seconds as one flat object (keys sorted
// by encoding/json).
func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	stats := maps.Clone(s.backend.Stats())
	if stats == nil {
		stats = map[string]uint64{}
	}
	stats["uptime_seconds"] = uint64(max(s.now().Sub(s.start), 0).Seconds())
	writeJSON(w, http.StatusOK, stats)
}

// handleDeleteCall removes one call: 204, 404 when the backend has no such call, 400 when the
// id is malformed.
func (s *Server) handleDeleteCall(w http.ResponseWriter, r *http.Request) {
	id, err := canonicalID(r.PathValue("public"), r.PathValue("peer"), r.PathValue("outer"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch err := s.backend.DeleteCall(id); {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no call "+id)
	case err != nil:
		s.log.Error("delete call failed", zap.String("id", id), zap.Error(err))
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		s.log.Info("call deleted through the admin socket", zap.String("id", id))
		w.WriteHeader(http.StatusNoContent)
	}
}

// canonicalID checks the three parts of a call id and returns it in the form CallView.ID uses:
// "public/peer/outer" with IPv4 addresses and a decimal 16-bit Call ID, or
// "public/peer/pending-PEER_CALL_ID" for a call with no outer ID yet. Leading zeros and the like
// are normalised so the backend only ever sees ids it could have printed.
func canonicalID(public, peer, outer string) (string, error) {
	var addrs [2]netip.Addr
	for i, s := range []string{public, peer} {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return "", fmt.Errorf("call id: %q is not an IPv4 address", s)
		}
		addrs[i] = a
	}
	num, pending := strings.CutPrefix(outer, "pending-")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		return "", fmt.Errorf("call id: %q is not a Call ID (0..65535 or pending-N)", outer)
	}
	id := strconv.FormatUint(n, 10)
	if pending {
		id = "pending-" + id
	}
	return addrs[0].String() + "/" + addrs[1].String() + "/" + id, nil
}

// limitBody answers 413 to a request whose body is over maxBodyBytes, declared or streamed, before
// any route sees it.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxBodyBytes))
			return
		}
		if r.ContentLength < 0 { // chunked: only reading tells
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxBodyBytes))
				return
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
				return
			}
			r.Body = io.NopCloser(strings.NewReader(string(body)))
		}
		next.ServeHTTP(w, r)
	})
}

// errorBody is the JSON of every error answer of the admin routes.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON writes v as one line of JSON. An encoding error here is a programming error in a
// fixed type; the status is already sent, so it can only cut the body short.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
