// Package ha replicates the call table of a gateway pair through etcd
// (DESIGN.md "A gateway pair"). Every node publishes its own control
// connections' records (conntrack.ConnSnap: the calls, the stream
// positions and the Call-ID allocation) under PREFIX/conns/NODE/KEY with
// its lease, and imports every other node's, so every node holds every
// call and the node that owns the addresses carries the traffic; nothing
// is promoted at a failover (conntrack/replica.go).
//
// etcd is never on the packet path: the table only stamps what changed;
// the publisher pulls the changed records, keeps them in a bounded map
// (the latest record per key) until etcd has taken them, and when etcd is
// slow or gone the gateway carries on, counting and logging (rate-limited)
// what waits. When its lease is lost or the map overflows it publishes its
// whole state again.
package ha

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"

	"github.com/pptpgw/pptpgw/conntrack"
)

// Defaults.
const (
	DefaultPrefix = "/pptpgw/"
	// DefaultLeaseTTL outlives a failover (keepalived moves the
	// addresses in about 3 s) with room for the standby to see the
	// traffic of the calls it takes over before the dead node's records
	// go; a dead node's calls nobody carries are gone after it.
	DefaultLeaseTTL = 30 * time.Second
	// DefaultOpTimeout bounds one etcd request: a slow etcd delays
	// replication, never the gateway.
	DefaultOpTimeout = 3 * time.Second
	// DefaultMaxPending bounds the records waiting for etcd; beyond it
	// they are dropped and the whole state is published again later.
	DefaultMaxPending = 65536
)

// Config is a node's replication setup.
type Config struct {
	Endpoints  []string    // etcd client URLs; none: replication is off
	Node       string      // this node's name, unique in the pair
	Prefix     string      // key prefix, ending in "/"
	TLS        *tls.Config // or the files below (--ha-etcd-ca/-cert/-key)
	CAFile     string
	CertFile   string
	KeyFile    string
	LeaseTTL   time.Duration
	OpTimeout  time.Duration
	MaxPending int
	Log        *zap.Logger
}

// Enabled reports whether replication is configured.
func (c Config) Enabled() bool { return len(c.Endpoints) > 0 }

func (c *Config) defaults() error {
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("ha: no node name (--ha-node) and no host name")
		}
		c.Node = h
	}
	if strings.ContainsAny(c.Node, "/ ") {
		return fmt.Errorf("ha: node name %q: no '/' or spaces", c.Node)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.TLS == nil {
		var err error
		if c.TLS, err = TLSConfig(c.CAFile, c.CertFile, c.KeyFile); err != nil {
			return err
		}
	}
	return nil
}

// TLSConfig builds the client TLS of --ha-etcd-ca/--ha-etcd-cert/--ha-etcd-key
// (nil, nil when all are empty).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ha etcd CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ha etcd CA %s: no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("ha etcd client certificate: give both --ha-etcd-cert and --ha-etcd-key")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("ha etcd client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Replicator keeps one node's table in step with the others' through etcd.
type Replicator struct {
	cfg     Config
	table   *conntrack.Table
	cli     *clientv3.Client
	log     *zap.Logger
	changed <-chan struct{}
	listed  chan struct{} // closed after the first listing of the records
	once    sync.Once
	st      counters
	errs    rateLog
}

// New connects (without waiting for etcd) and starts the table's change
// tracking.
func New(cfg Config, table *conntrack.Table) (*Replicator, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.OpTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  cfg.TLS,
		Logger:               cfg.Log.Named("etcd").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
	if err != nil {
		return nil, fmt.Errorf("ha: etcd client: %w", err)
	}
	r := &Replicator{cfg: cfg, table: table, cli: cli, log: cfg.Log, listed: make(chan struct{})}
	r.errs.log = cfg.Log
	r.changed = table.EnableReplica()
	return r, nil
}

// Node is this node's name.
func (r *Replicator) Node() string { return r.cfg.Node }

// Run replicates until ctx ends, then closes the client.
func (r *Replicator) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.watch(ctx)
	}()
	r.publish(ctx)
	wg.Wait()
	r.cli.Close()
}

// Keys: PREFIX/conns/NODE/KEY.

func (r *Replicator) connsPrefix() string { return r.cfg.Prefix + "conns/" }

func (r *Replicator) ownPrefix() string { return r.connsPrefix() + r.cfg.Node + "/" }

func (r *Replicator) parseKey(k []byte) (node, key string, ok bool) {
	rest, ok := strings.CutPrefix(string(k), r.connsPrefix())
	if !ok {
		return "", "", false
	}
	node, key, ok = strings.Cut(rest, "/")
	return node, key, ok && node != "" && key != ""
}

// connected reports whether the client's connection to etcd is up.
func (r *Replicator) connected() bool {
	cc := r.cli.ActiveConnection()
	return cc != nil && cc.GetState() == connectivity.Ready && r.st.lastOK.Load()
}

// failed counts and logs (rate-limited) an etcd error.
func (r *Replicator) failed(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	r.st.errors.Add(1)
	r.st.lastOK.Store(false)
	r.errs.warn(what, err)
}

func (r *Replicator) ok() { r.st.lastOK.Store(true) }

// rateLog logs the first error of a kind and then at most one per
// interval, with the number suppressed meanwhile.
type rateLog struct {
	log        *zap.Logger
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const rateLogInterval = 10 * time.Second

func (l *rateLog) warn(what string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.last) >= rateLogInterval {
		l.log.Warn("replication: etcd", zap.String("op", what), zap.Error(err), zap.Int("suppressed", l.suppressed))
		l.last, l.suppressed = now, 0
		return
	}
	l.suppressed++
}

// counters are the replication's stats.
type counters struct {
	lastOK       atomic.Bool
	published    atomic.Uint64 // records put
	deleted      atomic.Uint64 // own records deleted
	imported     atomic.Uint64
	importOlder  atomic.Uint64
	importBad    atomic.Uint64 // records that did not parse or import
	collisions   atomic.Uint64 // imported records with calls skipped (outer ID in use here)
	dropped      atomic.Uint64 // other nodes' connections removed with their records
	adopted      atomic.Uint64 // ... kept because their traffic passes here
	errors       atomic.Uint64
	resyncs      atomic.Uint64 // whole state published again
	overflows    atomic.Uint64 // pending records dropped for a full map
	pending      atomic.Int64
	pendingSince atomic.Int64 // unix ns of the oldest waiting change; 0 none
	lastTxn      atomic.Int64 // ns the last successful publish took
}

// Stats returns the replication state (`stats --json`: ha_*).
func (r *Replicator) Stats() map[string]uint64 {
	s := &r.st
	m := map[string]uint64{
		"ha_connected":        b2u(r.connected()),
		"ha_published":        s.published.Load(),
		"ha_deleted":          s.deleted.Load(),
		"ha_imported":         s.imported.Load(),
		"ha_import_older":     s.importOlder.Load(),
		"ha_import_bad":       s.importBad.Load(),
		"ha_import_collision": s.collisions.Load(),
		"ha_dropped":          s.dropped.Load(),
		"ha_adopted":          s.adopted.Load(),
		"ha_errors":           s.errors.Load(),
		"ha_resyncs":          s.resyncs.Load(),
		"ha_overflows":        s.overflows.Load(),
		"ha_pending":          uint64(max(s.pending.Load(), 0)),
		"ha_lag_ms":           uint64(r.lag() / time.Millisecond),
		"ha_publish_ms":       uint64(s.lastTxn.Load() / int64(time.Millisecond)),
	}
	return m
}

// lag is how long the oldest change not in etcd yet has waited.
func (r *Replicator) lag() time.Duration {
	since := r.st.pendingSince.Load()
	if since == 0 {
		return 0
	}
	return max(time.Duration(time.Now().UnixNano()-since), 0)
}

// Health is one line for /healthz.
func (r *Replicator) Health() string {
	state := "disconnected"
	if r.connected() {
		state = "connected"
	}
	return fmt.Sprintf("ha %s node=%s lag_ms=%d pending=%d errors=%d", state, r.cfg.Node,
		r.lag()/time.Millisecond, r.st.pending.Load(), r.st.errors.Load())
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
