package ha

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pptpgw/pptpgw/conntrack"
)

// watch imports the other nodes' records: a listing, then the changes
// after it; again from a listing when the watch fails (compaction, etcd
// lost its leader).
func (r *Replicator) watch(ctx context.Context) {
	backoff := retryMin
	first := true
	for ctx.Err() == nil {
		rev, err := r.list(ctx, first)
		if err != nil {
			r.failed("list", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, retryMax)
			continue
		}
		first = false
		backoff = retryMin
		r.once.Do(func() { close(r.listed) })
		if err := r.follow(ctx, rev+1); err != nil {
			r.failed("watch", err)
			sleep(ctx, backoff)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// list imports every record and drops the other nodes' connections whose
// records are gone. On the first listing this node's own records (of a
// previous life: a restart without a state file) are imported as its own.
func (r *Replicator) list(ctx context.Context, first bool) (int64, error) {
	octx, cancel := context.WithTimeout(ctx, 4*r.cfg.OpTimeout)
	defer cancel()
	resp, err := r.cli.Get(octx, r.connsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	r.ok()
	present := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		node, key, ok := r.parseKey(kv.Key)
		if !ok || (node == r.cfg.Node && !first) {
			continue
		}
		present[node+"/"+key] = true
		r.importRecord(node, kv.Value)
	}
	for node, keys := range r.table.ReplicaForeign() {
		for _, key := range keys {
			if !present[node+"/"+key] {
				r.drop(node, key)
			}
		}
	}
	return resp.Header.Revision, nil
}

// follow applies the changes from revision rev on until the watch fails.
func (r *Replicator) follow(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range r.cli.Watch(wctx, r.connsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
			return err
		}
		r.ok()
		for _, ev := range wr.Events {
			node, key, ok := r.parseKey(ev.Kv.Key)
			if !ok || node == r.cfg.Node {
				continue
			}
			if ev.Type == mvccpb.DELETE {
				r.drop(node, key)
			} else {
				r.importRecord(node, ev.Kv.Value)
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("watch closed")
}

// importRecord imports one record of node's ("" for this node's own).
func (r *Replicator) importRecord(node string, value []byte) {
	origin := node
	if node == r.cfg.Node {
		origin = ""
	}
	var cs conntrack.ConnSnap
	err := json.Unmarshal(value, &cs)
	res := 0
	if err == nil {
		res, err = r.table.ImportConn(origin, cs)
	}
	switch {
	case err != nil:
		r.st.importBad.Add(1)
		r.errs.warn("import "+node, err)
	case res == conntrack.ImportOlder:
		r.st.importOlder.Add(1)
	case res == conntrack.ImportAdopted:
		r.st.adopted.Add(1)
		r.log.Info("replication: took over a connection whose traffic passes here", zap.String("node", node),
			zap.String("inside", cs.Inside), zap.String("outside", cs.Outside))
	case res == conntrack.ImportPartial:
		r.st.collisions.Add(1)
		r.log.Warn("replication: imported calls collide with this node's", zap.String("node", node),
			zap.String("inside", cs.Inside), zap.String("outside", cs.Outside))
		r.st.imported.Add(1)
	default:
		r.st.imported.Add(1)
	}
}

// drop applies the deletion of node's record key.
func (r *Replicator) drop(node, key string) {
	adopted, err := r.table.DropReplica(node, key)
	switch {
	case err != nil:
		r.st.importBad.Add(1)
	case adopted:
		r.st.adopted.Add(1)
		r.log.Info("replication: took over a connection whose node's record went", zap.String("node", node), zap.String("conn", key))
	default:
		r.st.dropped.Add(1)
	}
}
