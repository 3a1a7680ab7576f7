package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// CallsWhere is Calls with GET /v1/calls's filters (inside, peer, state),
// evaluated by the daemon; an empty query is Calls.
func (c *Client) CallsWhere(ctx context.Context, q url.Values) (raw []byte, calls []CallView, err error) {
	path := "/v1/calls"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	raw, err = c.do(ctx, http.MethodGet, path)
	if err != nil {
		return nil, nil, err
	}
	var body CallsBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, nil, fmt.Errorf("admin socket %s: GET /v1/calls: bad answer: %w", c.path, err)
	}
	return raw, body.Calls, nil
}

// maxEventLine bounds one line of the stream.
const maxEventLine = 1 << 20

// Events reads GET /v1/events with the filter q (inside, peer, type) and
// calls fn with nil once the stream is open, then with each line (one
// JSON object, without its newline) as it arrives, until ctx ends (nil), the daemon closes the stream, or fn
// fails (its error). The stream has no overall timeout.
func (c *Client) Events(ctx context.Context, q url.Values, fn func(line []byte) error) error {
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pptpgw"+path, nil)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	stream := &http.Client{Transport: c.http.Transport} // no Timeout: it would cut the stream
	resp, err := stream.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
		return &statusError{path: c.path, req: "GET " + path, code: resp.StatusCode, status: resp.Status, msg: errorMessage(body)}
	}
	if err := fn(nil); err != nil {
		return err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return c.connError(err)
	}
	return fmt.Errorf("admin socket %s: the daemon closed the event stream", c.path)
}
