package ha

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Batches: etcd 3.4 takes at most 128 operations and 1.5 MiB per request.
const (
	maxBatchOps   = 64
	maxBatchBytes = 512 << 10
	retryMin      = 100 * time.Millisecond
	retryMax      = 2 * time.Second
	// refresh publishes whatever is pending even without a change signal.
	refresh = time.Second
)

// publisher puts this node's records into etcd.
type publisher struct {
	r        *Replicator
	lease    clientv3.LeaseID // 0: none (granted before the next write)
	leaseEnd chan struct{}    // closed when the lease's keep-alive ends
	kaCancel context.CancelFunc
	since    uint64 // the table's stamp the pending map is current to
	full     bool   // publish the whole state (start, lease lost, overflow)
	// pending: etcd key -> record (nil: delete), the latest per key.
	pending map[string][]byte
}

// publish runs the publisher until ctx ends. It writes nothing before
// the first listing of the records, which imports this node's own records
// of a previous life, but collects the table's changes meanwhile (etcd may
// be away for long).
func (r *Replicator) publish(ctx context.Context) {
	p := &publisher{r: r, full: true, pending: make(map[string][]byte)}
	defer p.endLease()
	tick := time.NewTicker(refresh)
	defer tick.Stop()
	listed := r.listed
	backoff := retryMin
	for {
		var retry <-chan time.Time
		if listed != nil {
			p.collect()
		} else if err := p.step(ctx); err != nil {
			r.failed("publish", err)
			retry = time.After(backoff)
			backoff = min(2*backoff, retryMax)
		} else {
			backoff = retryMin
		}
		select {
		case <-ctx.Done():
			return
		case <-listed:
			listed = nil
		case <-r.changed:
		case <-p.leaseEnd:
			r.log.Warn("replication: lease lost, publishing the whole state again")
			p.endLease()
		case <-retry:
		case <-tick.C:
		}
	}
}

// step collects the changes and writes what is pending.
func (p *publisher) step(ctx context.Context) error {
	p.collect()
	if p.lease == 0 {
		if err := p.grant(ctx); err != nil {
			return err
		}
		p.full = true
	}
	if p.full {
		if err := p.resync(ctx); err != nil {
			return err
		}
	}
	return p.flush(ctx)
}

// collect takes the table's changes into the pending map.
func (p *publisher) collect() {
	r := p.r
	if p.full {
		// The whole state goes anyway: only drain the gone list (and
		// let the lag show that something waits).
		_, _, seq := r.table.ReplicaChanges(math.MaxUint64)
		if seq != p.since && r.st.pendingSince.Load() == 0 {
			r.st.pendingSince.Store(time.Now().UnixNano())
		}
		p.since = seq
		return
	}
	recs, gone, seq := r.table.ReplicaChanges(p.since)
	p.since = seq
	if len(recs)+len(gone) == 0 {
		return
	}
	if len(p.pending) == 0 {
		r.st.pendingSince.Store(time.Now().UnixNano())
	}
	own := r.ownPrefix()
	for _, key := range gone {
		p.pending[own+key] = nil
	}
	for i := range recs {
		data, err := json.Marshal(&recs[i])
		if err != nil {
			continue // plain data: cannot fail
		}
		p.pending[own+recs[i].Inside+"_"+recs[i].Outside] = data
	}
	if len(p.pending) > r.cfg.MaxPending {
		r.st.overflows.Add(1)
		r.log.Warn("replication: too many changes waiting for etcd; the whole state goes again later",
			zap.Int("pending", len(p.pending)))
		clear(p.pending)
		p.full = true
	}
	r.st.pending.Store(int64(len(p.pending)))
}

// grant takes a new lease and keeps it alive while the node lives.
func (p *publisher) grant(ctx context.Context) error {
	r := p.r
	octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	g, err := r.cli.Grant(octx, int64(r.cfg.LeaseTTL/time.Second))
	if err != nil {
		return err
	}
	kctx, kcancel := context.WithCancel(ctx)
	ch, err := r.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		kcancel()
		return err
	}
	end := make(chan struct{})
	go func() {
		for range ch { // drained, or the client complains
		}
		close(end)
	}()
	p.lease, p.leaseEnd, p.kaCancel = g.ID, end, kcancel
	r.ok()
	return nil
}

func (p *publisher) endLease() {
	if p.kaCancel != nil {
		p.kaCancel()
	}
	p.lease, p.leaseEnd, p.kaCancel = 0, nil, nil
}

// resync makes the pending map the whole state: every record of this
// node, and the deletion of its keys in etcd that no record backs.
func (p *publisher) resync(ctx context.Context) error {
	r := p.r
	octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	resp, err := r.cli.Get(octx, r.ownPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	recs, _, seq := r.table.ReplicaChanges(0)
	p.since = seq
	clear(p.pending)
	for _, kv := range resp.Kvs {
		p.pending[string(kv.Key)] = nil
	}
	own := r.ownPrefix()
	for i := range recs {
		data, _ := json.Marshal(&recs[i])
		p.pending[own+recs[i].Inside+"_"+recs[i].Outside] = data
	}
	p.full = false
	r.st.resyncs.Add(1)
	r.st.pending.Store(int64(len(p.pending)))
	if len(p.pending) > 0 && r.st.pendingSince.Load() == 0 {
		r.st.pendingSince.Store(time.Now().UnixNano())
	}
	return nil
}

// flush writes the pending map in batches; what etcd took leaves it.
func (p *publisher) flush(ctx context.Context) error {
	r := p.r
	for len(p.pending) > 0 {
		ops, keys, puts := p.batch()
		start := time.Now()
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		_, err := r.cli.Txn(octx).Then(ops...).Commit()
		cancel()
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				p.endLease() // expired while etcd was away: granted again, whole state
			}
			return err
		}
		r.ok()
		r.st.lastTxn.Store(int64(time.Since(start)))
		for _, k := range keys {
			delete(p.pending, k)
		}
		r.st.published.Add(uint64(puts))
		r.st.deleted.Add(uint64(len(keys) - puts))
		r.st.pending.Store(int64(len(p.pending)))
	}
	r.st.pendingSince.Store(0)
	return nil
}

// batch picks pending operations for one transaction.
func (p *publisher) batch() (ops []clientv3.Op, keys []string, puts int) {
	size := 0
	for k, v := range p.pending {
		if len(ops) == maxBatchOps || (len(ops) > 0 && size+len(k)+len(v) > maxBatchBytes) {
			break
		}
		if v == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(v), clientv3.WithLease(p.lease)))
			puts++
		}
		keys = append(keys, k)
		size += len(k) + len(v)
	}
	return ops, keys, puts
}
