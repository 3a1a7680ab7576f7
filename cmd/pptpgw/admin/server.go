// Package admin is pptpgw's admin API (DESIGN.md "Admin socket"): HTTP/1.1 with JSON bodies over
// a unix socket, served by the daemon and used by `pptpgw calls` and `pptpgw stats`, plus an
// optional read-only TCP listener for Prometheus.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// ErrNotFound is what Backend.DeleteCall returns for an id it does not hold; the server answers
// 404 and the client returns an error that errors.Is ErrNotFound.
var ErrNotFound = errors.New("no such call")

// Backend is the daemon state the server exposes. Its methods are called from the server's
// goroutines, concurrently with each other and with the packet path, so they must be safe for
// concurrent use; they should return quickly (a copy of the state, not a view into it).
type Backend interface {
	// Calls returns a snapshot of the mapping table, in any order.
	Calls() []CallView
	// Stats returns counters since the daemon started, by name (packets_total, rewrites, ...).
	// The server adds uptime_seconds.
	Stats() map[string]uint64
	// DeleteCall removes the call whose id is "public/peer/outer_call_id" (or
	// "public/peer/pending-PEER_CALL_ID"), leaving a tombstone; ErrNotFound if there is none.
	DeleteCall(id string) error
}

// Healther is a Backend that adds a line to /healthz (the replication's
// state of a gateway pair), after "ok".
type Healther interface {
	Health() string
}

// Timeouts and sizes of both listeners. The clients are local tools and scrapers: anything
// slower than this is stuck, and holding a connection open must not pin a goroutine forever.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// maxBodyBytes is the largest request body accepted (413 above). No route reads one today;
	// the limit keeps a confused client from streaming into the daemon.
	maxBodyBytes = 4 << 10
)

// Server serves the admin API. It is safe for concurrent use.
type Server struct {
	backend Backend
	log     *zap.Logger
	reg     *prometheus.Registry
	start   time.Time
	now     func() time.Time // the clock for uptime_seconds; tests replace it

	mu          sync.Mutex
	servers     []*http.Server
	metricsAddr net.Addr
	closed      bool
}

// NewServer returns a server for backend that logs to log and serves reg on /metrics (an empty
// registry if reg is nil). uptime_seconds counts from this call.
func NewServer(backend Backend, log *zap.Logger, reg *prometheus.Registry) *Server {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{backend: backend, log: log.Named("admin"), reg: reg, start: time.Now(), now: time.Now}
}

// Serve listens on the unix socket path and serves the admin API on it in the background until
// Shutdown. Missing directories are created: the socket's own mode 0750, and owned by group when
// one is given (an existing directory is left as it is). A stale socket left by a daemon that
// died is replaced; a socket a live process answers on, or a file that is not a socket, is an
// error. The socket is made mode 0660 and, when group is not "", owned by that group, which
// must exist. Serve returns once the socket accepts connections, or an error naming the path
// (exit 1 in main).
func (s *Server) Serve(path, group string) error {
	ln, err := listenUnix(path, group)
	if err != nil {
		return err
	}
	s.log.Info("admin socket listening", zap.String("path", path))
	return s.serve(ln, s.adminHandler())
}

// ServeMetrics listens on the TCP address addr (host:port) and serves only GET /metrics on it, in
// the background until Shutdown: nothing that reads calls or changes state is reachable over
// the network. It returns once the listener is bound.
func (s *Server) ServeMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	s.mu.Lock()
	s.metricsAddr = ln.Addr()
	s.mu.Unlock()
	s.log.Info("metrics listening", zap.Stringer("addr", ln.Addr()))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler())
	return s.serve(ln, limitBody(mux))
}

// MetricsAddr returns the address ServeMetrics bound (useful with port 0), or nil.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}

// serve starts an http.Server with the common limits on ln.
func (s *Server) serve(ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          s.stdLog(),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("admin server is shut down")
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", zap.Stringer("addr", ln.Addr()), zap.Error(err))
		}
	}()
	return nil
}

// Shutdown stops every listener (removing the unix socket) and waits for requests in flight
// until ctx is done. The Server cannot be used again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("admin shutdown: %w", err)
	}
	return nil
}

// stdLog adapts the zap logger for net/http and promhttp, which log connection-level errors
// (TLS probes, timeouts) there.
func (s *Server) stdLog() *log.Logger {
	l, err := zap.NewStdLogAt(s.log, zap.WarnLevel)
	if err != nil { // only for an invalid level, which WarnLevel is not
		return log.Default()
	}
	return l
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:      s.stdLog(),
		ErrorHandling: promhttp.ContinueOnError, // one bad collector must not hide the rest
	})
}
