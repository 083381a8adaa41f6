package store

// The state in etcd, for replicas that share it (issue 13): the same
// record logic as the file's, on optimistic etcd transactions.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
)

// EtcdOptions configures the state in etcd.
type EtcdOptions struct {
	// Client is the etcd client; the caller closes it. Required.
	Client *clientv3.Client
	// Prefix holds one cluster's keys, for example "/shoes-scaleset/".
	// Required; it must end with "/".
	Prefix string
	// OwnerID names this replica's message sessions. Required.
	OwnerID string
	// Timeout bounds one transaction (default 10s).
	Timeout time.Duration
	// HistoryMaxAge and HistoryMaxCount bound the history as for the file.
	HistoryMaxAge   time.Duration
	HistoryMaxCount int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Fencer, when set, fences every write for a target on this
	// replica's ownership of it (replicas sharing the targets).
	Fencer Fencer
}

// Fencer fences a replica's writes on its ownership of targets: each
// write for a target commits only while the conditions hold.
type Fencer interface {
	// Fence returns the conditions under which this replica may write
	// target's records (it owns the target; or, for a target nobody
	// owns, it is the leader); ok is false when it may not (any more).
	Fence(target string) (cmps []clientv3.Cmp, ok bool)
	// SafeUntil is the replica's safe deadline. A store call ends by it:
	// one waiting for an etcd out of reach would otherwise hold the
	// caller, a worker that must stop acting by then.
	SafeUntil() time.Time
}

// ErrNotOwner: the write is for a target this replica does not own (any
// more); nothing was written.
var ErrNotOwner = errors.New("not the owner of the target")

// Validate fills in defaults and reports the first invalid setting.
func (o *EtcdOptions) Validate() error {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	commonDefaults(&o.HistoryMaxAge, &o.HistoryMaxCount, &o.Now)
	switch {
	case o.Client == nil:
		return setting.Invalid("Client", "etcd client is required")
	case o.Prefix == "" || !strings.HasSuffix(o.Prefix, "/"):
		return setting.Invalid("Prefix", "etcd prefix %q must be non-empty and end with /", o.Prefix)
	case o.OwnerID == "":
		return setting.Invalid("OwnerID", "owner ID is required")
	case o.Timeout < 0 || o.HistoryMaxAge < 0 || o.HistoryMaxCount < 0:
		return setting.Invalid("Timeout", "timeouts and history bounds must not be negative")
	}
	return nil
}

// OpenEtcd returns the state kept in etcd under opts.Prefix.
func OpenEtcd(opts EtcdOptions) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open state in etcd: %w", err)
	}
	return &Store{
		kv:       &etcdBackend{c: opts.Client, prefix: opts.Prefix, timeout: opts.Timeout, fencer: opts.Fencer},
		path:     "etcd:" + opts.Prefix,
		ownerID:  opts.OwnerID,
		clock:    opts.Now,
		maxAge:   opts.HistoryMaxAge,
		maxCount: opts.HistoryMaxCount,
	}, nil
}

// etcdBackend runs the record logic's transactions on etcd. A view reads
// one revision. An update records the mod revision of every key it reads,
// buffers its writes, and commits them only if none of those keys changed
// since, else it runs again (optimistic concurrency, at most
// maxTxnAttempts times). Scans (ForEach) are not in the read set: no
// update of the record logic decides on what a scan did not see.
type etcdBackend struct {
	c       *clientv3.Client
	prefix  string
	timeout time.Duration
	fencer  Fencer // nil: writes are not fenced
}

// maxTxnAttempts bounds the runs of a transaction that keeps conflicting.
const maxTxnAttempts = 32

// errConflict: a key read by the transaction changed before its commit.
var errConflict = errors.New("etcd transaction conflict")

// minCallTime is the least time a store call gets past the replica's safe
// deadline: enough for a read or a write of a replica that can reach
// etcd (one joining again), too little to hold a stopping worker.
const minCallTime = 200 * time.Millisecond

// context bounds one store call: the timeout, and with replicas the safe
// deadline (Fencer.SafeUntil), but at least minCallTime.
func (e *etcdBackend) context() (context.Context, context.CancelFunc) {
	now := time.Now()
	deadline := now.Add(e.timeout)
	if e.fencer != nil {
		if safe := e.fencer.SafeUntil(); safe.Before(deadline) {
			deadline = safe
		}
		deadline = later(deadline, now.Add(minCallTime))
	}
	return context.WithDeadline(context.Background(), deadline)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (e *etcdBackend) view(fn func(txn) error) error {
	ctx, cancel := e.context()
	defer cancel()
	t := &etcdTxn{e: e, ctx: ctx}
	err := fn(t)
	if t.err != nil {
		return t.err // a record not read is not a record not found
	}
	return err
}

func (e *etcdBackend) update(fn func(txn) error) error {
	ctx, cancel := e.context()
	defer cancel()
	for attempt := 1; ; attempt++ {
		t := &etcdTxn{e: e, ctx: ctx, reads: map[string]int64{}, writes: map[string]etcdWrite{}}
		err := fn(t)
		if t.err != nil {
			return t.err
		}
		if err != nil {
			return err
		}
		err = t.commit()
		if !errors.Is(err, errConflict) || attempt == maxTxnAttempts {
			return err
		}
	}
}

func (e *etcdBackend) batch(fn func(txn) error) error { return e.update(fn) }

type etcdWrite struct {
	value  []byte
	delete bool
}

type etcdTxn struct {
	e      *etcdBackend
	ctx    context.Context
	rev    int64            // the snapshot read; 0 before the first read
	reads  map[string]int64 // mod revision seen, by key (0: absent); nil in a view
	writes map[string]etcdWrite
	order  []string                  // written keys, in write order
	fences map[string][]clientv3.Cmp // by target
	// err is the first read that failed: bucket's Get and Len cannot
	// return it, so the transaction does, in place of fn's result.
	err error
}

func (t *etcdTxn) fence(target string) {
	if _, done := t.fences[target]; t.e.fencer == nil || target == "" || done {
		return
	}
	cmps, ok := t.e.fencer.Fence(target)
	if !ok {
		t.fail(fmt.Errorf("target %s: %w", target, ErrNotOwner))
		return
	}
	if t.fences == nil {
		t.fences = map[string][]clientv3.Cmp{}
	}
	t.fences[target] = cmps
}

func (t *etcdTxn) bucket(name []byte) bucket {
	return etcdBucket{t: t, prefix: t.e.prefix + string(name) + "/"}
}

// get reads key at the snapshot revision.
func (t *etcdTxn) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.e.c.Get(t.ctx, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("etcd get %q: %w", key, err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func (t *etcdTxn) commit() error {
	if len(t.order) == 0 {
		return nil
	}
	cmps := make([]clientv3.Cmp, 0, len(t.reads))
	for k, rev := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		if w := t.writes[k]; w.delete {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.value)))
		}
	}
	fences := make([]clientv3.Cmp, 0, len(t.fences))
	for _, f := range t.fences {
		fences = append(fences, f...)
	}
	cmps = append(cmps, fences...)
	resp, err := t.e.c.Txn(t.ctx).If(cmps...).Then(ops...).
		Else(clientv3.OpTxn(fences, nil, nil)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd commit: %w", err)
	}
	if !resp.Succeeded {
		if len(fences) > 0 && !resp.Responses[0].GetResponseTxn().Succeeded {
			return ErrNotOwner // another replica owns a target now
		}
		return errConflict
	}
	return nil
}

type etcdBucket struct {
	t      *etcdTxn
	prefix string
}

func (b etcdBucket) Get(key []byte) []byte {
	k := b.prefix + string(key)
	if w, ok := b.t.writes[k]; ok {
		if w.delete {
			return nil
		}
		return w.value
	}
	resp, err := b.t.get(k)
	if err != nil {
		b.t.fail(err)
		return nil
	}
	var rev int64
	var v []byte
	if len(resp.Kvs) > 0 {
		rev, v = resp.Kvs[0].ModRevision, resp.Kvs[0].Value
	}
	if b.t.reads != nil {
		b.t.reads[k] = rev
	}
	return v
}

func (b etcdBucket) Put(key, value []byte) error {
	return b.write(b.prefix+string(key), etcdWrite{value: bytes.Clone(value)})
}

func (b etcdBucket) Delete(key []byte) error {
	return b.write(b.prefix+string(key), etcdWrite{delete: true})
}

func (b etcdBucket) write(k string, w etcdWrite) error {
	if b.t.writes == nil {
		return ErrReadOnly
	}
	if _, ok := b.t.writes[k]; !ok {
		b.t.order = append(b.t.order, k)
	}
	b.t.writes[k] = w
	return nil
}

func (b etcdBucket) ForEach(fn func(k, v []byte) error) error {
	return b.scan(clientv3.SortAscend, fn)
}

func (b etcdBucket) ForEachReverse(fn func(k, v []byte) error) error {
	return b.scan(clientv3.SortDescend, fn)
}

// scan walks the bucket's keys at the snapshot, as changed by the
// transaction's own writes to keys that existed.
func (b etcdBucket) scan(order clientv3.SortOrder, fn func(k, v []byte) error) error {
	resp, err := b.t.get(b.prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, order))
	if err != nil {
		b.t.fail(err)
		return err
	}
	for _, kv := range resp.Kvs {
		v := kv.Value
		if w, ok := b.t.writes[string(kv.Key)]; ok {
			if w.delete {
				continue
			}
			v = w.value
		}
		if err := fn(kv.Key[len(b.prefix):], v); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (b etcdBucket) Len() int {
	resp, err := b.t.get(b.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.t.fail(err)
		return 0
	}
	return int(resp.Count)
}

// fail records a read that failed; the transaction returns it.
func (t *etcdTxn) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}
