package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

const (
	// clientTimeout bounds a whole request when the caller's context has no deadline: a CLI
	// must not hang on a stuck daemon.
	clientTimeout = 30 * time.Second
	// maxResponseBytes bounds what the client reads: a full table of 4096 calls is about 2 MB.
	maxResponseBytes = 64 << 20
)

// Client talks to a daemon's admin socket. It is safe for concurrent use.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client for the admin socket at path. Nothing is dialled until a request.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 10 * time.Second,
	}
	return &Client{path: path, http: &http.Client{Transport: tr, Timeout: clientTimeout}}
}

// Calls returns the mapping table: the raw GET /v1/calls body (what `calls --json` prints,
// byte for byte) and its decoded calls.
func (c *Client) Calls(ctx context.Context) (raw []byte, calls []CallView, err error) {
	return c.CallsWhere(ctx, nil)
}

// Stats returns the counters: the raw GET /v1/stats body (what `stats --json` prints) and the
// decoded object.
func (c *Client) Stats(ctx context.Context) (raw []byte, stats map[string]uint64, err error) {
	raw, err = c.do(ctx, http.MethodGet, "/v1/stats")
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		return nil, nil, fmt.Errorf("admin socket %s: GET /v1/stats: bad answer: %w", c.path, err)
	}
	return raw, stats, nil
}

// DeleteCall removes the call with id "public/peer/outer_call_id" as printed by Calls. The error
// is ErrNotFound (errors.Is) when the daemon has no such call.
func (c *Client) DeleteCall(ctx context.Context, id string) error {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return fmt.Errorf("call id %q is not PUBLIC/PEER/OUTER_CALL_ID", id)
	}
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	_, err := c.do(ctx, http.MethodDelete, "/v1/calls/"+strings.Join(parts, "/"))
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return fmt.Errorf("call %s: %w", id, ErrNotFound)
	}
	return err
}

// do sends one request and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string) ([]byte, error) {
	// The host is ignored (the transport dials the socket); it only has to be valid.
	req, err := http.NewRequestWithContext(ctx, method, "http://pptpgw"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, c.connError(err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("admin socket %s: %s %s: answer over %d bytes", c.path, method, path, maxResponseBytes)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &statusError{path: c.path, req: method + " " + path, code: resp.StatusCode, status: resp.Status, msg: errorMessage(body), body: body}
	}
	return body, nil
}

// connError turns a transport error into one line an operator can act on, e.g.
// "admin socket /run/pptpgw/admin.sock: connection refused (is pptpgw running?)". The
// original error stays reachable with errors.Is/As.
func (c *Client) connError(err error) error {
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &errno) && (errno == syscall.ECONNREFUSED || errno == syscall.ENOENT):
		return &connError{path: c.path, msg: errno.Error() + " (is pptpgw running?)", err: err}
	case errors.As(err, &errno) && (errno == syscall.EACCES || errno == syscall.EPERM):
		return &connError{path: c.path, msg: errno.Error() + " (run as root or as a member of the --admin-group)", err: err}
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &connError{path: c.path, msg: "no answer in time (is pptpgw stuck?)", err: err}
	case errors.As(err, &errno):
		return &connError{path: c.path, msg: errno.Error(), err: err}
	}
	return &connError{path: c.path, msg: err.Error(), err: err}
}

// connError is a failure to talk to the socket at all.
type connError struct {
	path, msg string
	err       error
}

func (e *connError) Error() string { return "admin socket " + e.path + ": " + e.msg }
func (e *connError) Unwrap() error { return e.err }

// statusError is a non-2xx answer.
type statusError struct {
	path, req, status, msg string
	code                   int
	body                   []byte // the answer as sent (a 503 of /healthz is a report)
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("admin socket %s: %s: %s", e.path, e.req, e.status)
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

// errorMessage extracts the message of an error answer: the "error" member of the admin routes'
// JSON, or the first line of a plain-text answer (ServeMux's 404 and 405).
func errorMessage(body []byte) string {
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		return eb.Error
	}
	line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	return string(line)
}
