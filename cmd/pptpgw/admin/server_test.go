package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/pptpgw/pptpgw/conntrack"
)

// fakeBackend holds a fixed table and records deletions.
type fakeBackend struct {
	mu      sync.Mutex
	calls   []CallView
	stats   map[string]uint64
	deleted []string
	failDel error // returned by DeleteCall for ids it knows, if set
}

func (b *fakeBackend) Calls() []CallView {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *fakeBackend) Stats() map[string]uint64 { return b.stats }

func (b *fakeBackend) DeleteCall(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, c := range b.calls {
		if c.ID == id {
			if b.failDel != nil {
				return b.failDel
			}
			b.calls = append(b.calls[:i:i], b.calls[i+1:]...)
			b.deleted = append(b.deleted, id)
			return nil
		}
	}
	return ErrNotFound
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sampleCalls() []CallView {
	return []CallView{
		{ID: "198.51.100.1/203.0.113.5/40001", State: "established", Role: "pns-inside",
			InsideAddr: "192.168.1.10", InsideCallID: 0, PublicAddr: "198.51.100.1", OuterCallID: 40001,
			PeerAddr: "203.0.113.5", PeerCallID: 555, Created: t0, LastSeen: t0.Add(time.Minute),
			PacketsIn: 10, PacketsOut: 12, BytesIn: 1000, BytesOut: 1200},
		{ID: "198.51.100.1/203.0.113.5/256", State: "pending", Role: "pns-inside",
			InsideAddr: "192.168.1.11", InsideCallID: 256, PublicAddr: "198.51.100.1", OuterCallID: 256,
			PeerAddr: "203.0.113.5", Created: t0, LastSeen: t0},
		{ID: "198.51.100.1/203.0.113.9/pending-77", State: "pending", Role: "pac-inside",
			InsideAddr: "192.168.1.20", PublicAddr: "198.51.100.1", PeerAddr: "203.0.113.9", PeerCallID: 77,
			Created: t0, LastSeen: t0},
	}
}

// startServer serves b on a socket under a fresh temp dir (which Serve has to create) and returns
// the socket path. now, if not nil, is the server's clock.
func startServer(t *testing.T, b Backend, reg *prometheus.Registry, now func() time.Time) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "admin.sock")
	s := NewServer(b, zaptest.NewLogger(t), reg)
	if now != nil {
		s.now = now
	}
	if err := s.Serve(path, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, path
}

// unixHTTP is a plain HTTP client over the socket, for requests Client never sends.
func unixHTTP(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

func request(t *testing.T, hc *http.Client, method, url string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pptpgw_rewrites_total", Help: "Call ID rewrites."})
	reg.MustRegister(c)
	c.Add(7)
	b := &fakeBackend{calls: sampleCalls(), stats: map[string]uint64{"packets_total": 42, "rewrites": 7}}
	_, path := startServer(t, b, reg, func() time.Time { return time.Now().Add(90 * time.Second) })
	hc := unixHTTP(path)

	code, hdr, body := request(t, hc, "GET", "http://x/v1/calls", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("GET /v1/calls: %d %s", code, hdr.Get("Content-Type"))
	}
	var calls CallsBody
	if err := json.Unmarshal([]byte(body), &calls); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range calls.Calls {
		ids = append(ids, c.ID)
	}
	if got := strings.Join(ids, " "); got != "198.51.100.1/203.0.113.5/256 198.51.100.1/203.0.113.5/40001 198.51.100.1/203.0.113.9/pending-77" {
		t.Errorf("ids not sorted: %s", got)
	}
	for _, want := range []string{`"inside_call_id":0`, `"created":"2026-03-01T12:00:00Z"`, `"outer_call_id":40001`} {
		if !strings.Contains(body, want) {
			t.Errorf("calls body lacks %s: %s", want, body)
		}
	}

	code, _, body = request(t, hc, "GET", "http://x/v1/stats", nil)
	if code != 200 || body != `{"packets_total":42,"rewrites":7,"uptime_seconds":90}`+"\n" {
		t.Errorf("GET /v1/stats: %d %q", code, body)
	}
	if code, _, body = request(t, hc, "GET", "http://x/healthz", nil); code != 200 || body != `{"status":"ok","live":true,"problems":[]}`+"\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	code, _, body = request(t, hc, "GET", "http://x/metrics", nil)
	if code != 200 || !strings.Contains(body, "pptpgw_rewrites_total 7") {
		t.Errorf("GET /metrics: %d %q", code, body)
	}
	// After a GC, as text: the MemStats the scale bench reads per call.
	if code, _, body = request(t, hc, "GET", "http://x/debug/pprof/heap?gc=1&debug=1", nil); code != 200 || !strings.Contains(body, "# HeapAlloc = ") {
		t.Errorf("GET /debug/pprof/heap: %d %.200q", code, body)
	}
}

func TestEmptyTable(t *testing.T) {
	_, path := startServer(t, &fakeBackend{}, nil, nil)
	hc := unixHTTP(path)
	if _, _, body := request(t, hc, "GET", "http://x/v1/calls", nil); body != `{"calls":[]}`+"\n" {
		t.Errorf("empty table: %q, want calls [] not null", body)
	}
	if _, _, body := request(t, hc, "GET", "http://x/v1/stats", nil); body != `{"uptime_seconds":0}`+"\n" {
		t.Errorf("empty stats: %q", body)
	}
}

func TestDelete(t *testing.T) {
	b := &fakeBackend{calls: sampleCalls()}
	_, path := startServer(t, b, nil, nil)
	hc := unixHTTP(path)
	tests := []struct {
		url     string
		code    int
		deleted string // the id the backend got
		body    string // in the answer
	}{
		{url: "/v1/calls/198.51.100.1/203.0.113.5/40001", code: 204, deleted: "198.51.100.1/203.0.113.5/40001"},
		{url: "/v1/calls/198.51.100.1/203.0.113.5/40001", code: 404, body: `{"error":"no call 198.51.100.1/203.0.113.5/40001"}`},
		{url: "/v1/calls/198.51.100.1/203.0.113.5/00256", code: 204, deleted: "198.51.100.1/203.0.113.5/256"},
		{url: "/v1/calls/198.51.100.1/203.0.113.9/pending-77", code: 204, deleted: "198.51.100.1/203.0.113.9/pending-77"},
		{url: "/v1/calls/198.51.100.1/203.0.113.5/1", code: 404},
		{url: "/v1/calls/public/203.0.113.5/1", code: 400, body: `"call id: \"public\" is not an IPv4 address"`},
		{url: "/v1/calls/198.51.100.1/2001:db8::1/1", code: 400, body: "is not an IPv4 address"},
		{url: "/v1/calls/198.51.100.1/203.0.113.5/65536", code: 400, body: "is not a Call ID"},
		{url: "/v1/calls/198.51.100.1/203.0.113.5/-1", code: 400, body: "is not a Call ID"},
		{url: "/v1/calls/198.51.100.1/203.0.113.5/pending-x", code: 400, body: "is not a Call ID"},
		{url: "/v1/calls/198.51.100.1/203.0.113.5", code: 404},
	}
	for _, tt := range tests {
		b.mu.Lock()
		b.deleted = nil
		b.mu.Unlock()
		code, _, body := request(t, hc, "DELETE", "http://x"+tt.url, nil)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("DELETE %s: %d %q, want %d with %q", tt.url, code, body, tt.code, tt.body)
		}
		b.mu.Lock()
		got := strings.Join(b.deleted, " ")
		b.mu.Unlock()
		if got != tt.deleted {
			t.Errorf("DELETE %s: backend deleted %q, want %q", tt.url, got, tt.deleted)
		}
	}

	b.mu.Lock()
	b.failDel = errors.New("table locked")
	b.calls = sampleCalls()
	b.mu.Unlock()
	if code, _, body := request(t, hc, "DELETE", "http://x/v1/calls/198.51.100.1/203.0.113.5/40001", nil); code != 500 || !strings.Contains(body, "table locked") {
		t.Errorf("backend failure: %d %q", code, body)
	}
}

func TestMethodsAndLimits(t *testing.T) {
	_, path := startServer(t, &fakeBackend{}, nil, nil)
	hc := unixHTTP(path)
	tests := []struct {
		method, url string
		body        io.Reader
		code        int
		allow       string
	}{
		{method: "POST", url: "/v1/calls", code: 405, allow: "GET, HEAD"},
		{method: "DELETE", url: "/v1/calls", code: 405},
		{method: "PUT", url: "/v1/calls/198.51.100.1/203.0.113.5/1", code: 405, allow: "DELETE"},
		{method: "GET", url: "/v1/calls/198.51.100.1/203.0.113.5/1", code: 405},
		{method: "POST", url: "/v1/stats", code: 405},
		{method: "POST", url: "/healthz", code: 405},
		{method: "DELETE", url: "/metrics", code: 405},
		{method: "HEAD", url: "/healthz", code: 200},
		{method: "GET", url: "/v2/calls", code: 404},
		{method: "GET", url: "/", code: 404},
		{method: "GET", url: "/v1/calls", body: strings.NewReader(strings.Repeat("x", 4096)), code: 200},
		{method: "GET", url: "/v1/calls", body: strings.NewReader(strings.Repeat("x", 4097)), code: 413},
		// Chunked: the length is unknown until read.
		{method: "GET", url: "/v1/stats", body: io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))), code: 413},
		{method: "GET", url: "/v1/stats", body: io.MultiReader(strings.NewReader("{}")), code: 200},
	}
	for _, tt := range tests {
		code, hdr, body := request(t, hc, tt.method, "http://x"+tt.url, tt.body)
		if code != tt.code {
			t.Errorf("%s %s: %d %q, want %d", tt.method, tt.url, code, body, tt.code)
		}
		if tt.allow != "" && hdr.Get("Allow") != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.url, hdr.Get("Allow"), tt.allow)
		}
	}
}

func TestServeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pptpgw_calls_active", Help: "Calls in the table."})
	reg.MustRegister(g)
	g.Set(3)
	s := NewServer(&fakeBackend{calls: sampleCalls()}, zaptest.NewLogger(t), reg)
	if err := s.ServeMetrics("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	base := "http://" + s.MetricsAddr().String()
	hc := &http.Client{}
	if code, _, body := request(t, hc, "GET", base+"/metrics", nil); code != 200 || !strings.Contains(body, "pptpgw_calls_active 3") {
		t.Errorf("GET /metrics: %d %q", code, body)
	}
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/v1/calls", 404}, // read-only: nothing but metrics over TCP
		{"DELETE", "/v1/calls/198.51.100.1/203.0.113.5/40001", 404},
		{"GET", "/v1/stats", 404},
		{"GET", "/debug/pprof/heap", 404},
		{"POST", "/metrics", 405},
	} {
		if code, _, _ := request(t, hc, tt.method, base+tt.path, nil); code != tt.code {
			t.Errorf("%s %s over TCP: %d, want %d", tt.method, tt.path, code, tt.code)
		}
	}
	if err := NewServer(&fakeBackend{}, nil, nil).ServeMetrics("127.0.0.1:http-alt-bad"); err == nil || !strings.HasPrefix(err.Error(), "metrics listener 127.0.0.1:http-alt-bad: ") {
		t.Errorf("bad address: %v", err)
	}
}

func TestViewNode(t *testing.T) {
	var c conntrack.CallInfo
	c.Conn.Node = "gw-b"
	v := ViewOf(c)
	b, _ := json.Marshal(v)
	if v.Node != "gw-b" || !strings.HasSuffix(string(b), `"node":"gw-b"}`) {
		t.Errorf("view %s", b)
	}
	b, _ = json.Marshal(ViewOf(conntrack.CallInfo{}))
	if strings.Contains(string(b), `"node"`) {
		t.Errorf("a single gateway's call names a node: %s", b)
	}
}
