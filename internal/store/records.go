package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ScaleSet is the runner scale set the sidecar keeps on GitHub for one
// myshoes target. Key: TargetID.
type ScaleSet struct {
	TargetID      string `json:"target_id"`
	Scope         string `json:"scope"`
	Name          string `json:"name"`
	ScaleSetID    int    `json:"scale_set_id"`
	RunnerGroupID int    `json:"runner_group_id"`
	// Labels are the labels the scale set is given.
	Labels []string `json:"labels"`
	// GitHubLabels are the labels GitHub holds for the scale set, read back
	// after it was created or updated. DroppedLabels are those of Labels
	// it did not keep (GHES 3.18–3.20 without custom labels keep only the
	// name): a workflow asking for one never reaches the scale set.
	GitHubLabels            []string `json:"github_labels,omitempty"`
	DroppedLabels           []string `json:"dropped_labels,omitempty"`
	ResourceType            string   `json:"resource_type"`
	TargetStatus            string   `json:"target_status"`
	TargetStatusDescription string   `json:"target_status_description,omitzero"`
	LastError               string   `json:"last_error,omitzero"`
	// MinRunners and MaxRunners are the target's effective policy, and
	// PolicyRule the rule of the policy file that gave it ("defaults"
	// when none matched); records written before policies have none.
	MinRunners int       `json:"min_runners,omitzero"`
	MaxRunners int       `json:"max_runners,omitzero"`
	PolicyRule string    `json:"policy_rule,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Session is the message session held on a scale set, and the jobs still
// to acquire on it. Key: ScaleSetID. SessionID is empty when no session is
// held but acquisitions are still pending.
type Session struct {
	ScaleSetID    int       `json:"scale_set_id"`
	TargetID      string    `json:"target_id"`
	Scope         string    `json:"scope"`
	SessionID     string    `json:"session_id"`
	OwnerName     string    `json:"owner_name"`
	LastMessageID int64     `json:"last_message_id"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	// PendingAcquire are JobAvailable runner requests of acknowledged
	// messages not acquired yet (GHES). They outlive the session: any
	// session of the scale set may acquire them.
	PendingAcquire []PendingAcquisition `json:"pending_acquire,omitempty"`
}

// PendingAcquisition is one runner request to acquire, and since when.
type PendingAcquisition struct {
	RequestID int64     `json:"request_id"`
	Since     time.Time `json:"since"`
}

// RunnerState is the lifecycle state of a runner record (see DESIGN.md).
type RunnerState string

// Runner states. A runner that fails or finishes leaves the runners bucket
// for the history bucket; "failed" is a history reason, not a state.
const (
	StatePending         RunnerState = "pending"
	StateConfigured      RunnerState = "configured"
	StateIdle            RunnerState = "idle"
	StateBusy            RunnerState = "busy"
	StateDeleting        RunnerState = "deleting"
	StateUnknownInstance RunnerState = "unknown-instance"
)

// Counted reports whether a runner in this state counts toward the scale
// set's current size: pending, configured, idle and busy.
func (s RunnerState) Counted() bool {
	switch s {
	case StatePending, StateConfigured, StateIdle, StateBusy:
		return true
	}
	return false
}

// Valid reports whether s is one of the defined states.
func (s RunnerState) Valid() bool {
	return s.Counted() || s == StateDeleting || s == StateUnknownInstance
}

// Runner is one ephemeral runner and the instance behind it. Key: Name.
type Runner struct {
	Name         string `json:"name"`
	RunnerID     int64  `json:"runner_id"`
	TargetID     string `json:"target_id"`
	Scope        string `json:"scope"`
	ScaleSetID   int    `json:"scale_set_id"`
	CloudID      string `json:"cloud_id"`
	ShoesType    string `json:"shoes_type"`
	IPAddress    string `json:"ip_address"`
	ResourceType string `json:"resource_type"`

	State RunnerState `json:"state"`
	// StateSince holds when each state was (first) entered.
	StateSince map[RunnerState]time.Time `json:"state_since"`
	CreatedAt  time.Time                 `json:"created_at"`
	UpdatedAt  time.Time                 `json:"updated_at"`

	// DeleteReason says why a deleting runner leaves; it becomes the
	// history record's reason.
	DeleteReason string `json:"delete_reason,omitzero"`
	// Delete retries with backoff.
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"last_error,omitzero"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`

	// The job, once busy.
	JobID         string `json:"job_id,omitzero"`
	JobRequestID  int64  `json:"job_request_id,omitzero"`
	Repository    string `json:"repository,omitzero"`
	WorkflowRef   string `json:"workflow_ref,omitzero"`
	WorkflowRunID int64  `json:"workflow_run_id,omitzero"`
	JobResult     string `json:"job_result,omitzero"`
}

// HistoryRecord is a finished runner. Reason is why it finished:
// "completed", "failed", "bootstrap-timeout", "idle-ttl", "scale-down",
// "delete-failed", "removed", ...
type HistoryRecord struct {
	Runner     Runner    `json:"runner"`
	Reason     string    `json:"reason"`
	FinishedAt time.Time `json:"finished_at"`
}

// RunnerFilter selects runners; zero fields match everything.
type RunnerFilter struct {
	TargetID   string
	ScaleSetID int
	States     []RunnerState // any of these
	Scope      string
}

func (f RunnerFilter) match(r *Runner) bool {
	if f.TargetID != "" && r.TargetID != f.TargetID ||
		f.ScaleSetID != 0 && r.ScaleSetID != f.ScaleSetID ||
		f.Scope != "" && r.Scope != f.Scope {
		return false
	}
	if len(f.States) == 0 {
		return true
	}
	for _, st := range f.States {
		if r.State == st {
			return true
		}
	}
	return false
}

// HistoryFilter selects history records; Limit 0 means no limit.
type HistoryFilter struct {
	Scope string
	Limit int
}

// recordVersion is the version stamped into every stored value.
const recordVersion = 1

// envelope is the stored form of every record: the version first, then the
// record. Unknown fields are ignored on read, so a newer writer that only
// adds fields stays readable.
type envelope[T any] struct {
	V    int `json:"v"`
	Data T   `json:"data"`
}

func encode[T any](rec T) ([]byte, error) {
	raw, err := json.Marshal(envelope[T]{V: recordVersion, Data: rec})
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return raw, nil
}

func decode[T any](raw []byte) (T, error) {
	var e envelope[T]
	if err := json.Unmarshal(raw, &e); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch {
	case e.V > recordVersion:
		var zero T
		return zero, fmt.Errorf("%w: record version %d > supported %d", ErrNewerSchema, e.V, recordVersion)
	case e.V < 1:
		var zero T
		return zero, fmt.Errorf("%w: record has no version", ErrCorrupt)
	}
	return e.Data, nil
}

// txn is one transaction over the state's buckets. The record logic of
// this package (runners, sessions, scale sets, history, meta) is written
// against txn and bucket only, so another backend can carry it; bbolt
// carries it today (boltTx).
type txn interface {
	bucket(name []byte) bucket
	// fence makes the transaction's writes conditional on this replica
	// owning target (etcd with replicas); the file has no owners.
	fence(target string)
}

// bucket is one bucket of a transaction: keys in byte order.
type bucket interface {
	// Get returns the value of key, nil if there is none. It is valid
	// for the transaction only.
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	// ForEach calls fn for every key in order, until fn returns an error.
	ForEach(fn func(k, v []byte) error) error
	// ForEachReverse is ForEach from the last key; errStop ends the walk
	// without an error.
	ForEachReverse(fn func(k, v []byte) error) error
	// Len is the number of keys.
	Len() int
}

// errStop ends a ForEach or ForEachReverse walk early, with no error.
var errStop = errors.New("stop")

// boltTx is txn on a bbolt transaction.
type boltTx struct{ tx *bolt.Tx }

func (boltTx) fence(string) {}

// txVersion is the committed version a read transaction sees, if its
// backend knows it before reading: the same version, the same records.
// bbolt numbers its commits (a read transaction has the ID of the last
// one); an etcd snapshot's revision is known only after its first read,
// and moves with every key of the cluster, so etcd reports none.
func txVersion(tx txn) (uint64, bool) {
	if b, ok := tx.(boltTx); ok {
		return uint64(b.tx.ID()), true
	}
	return 0, false
}

func (t boltTx) bucket(name []byte) bucket {
	b := t.tx.Bucket(name)
	if bytes.Equal(name, bucketHistory) {
		b.FillPercent = historyFillPercent
	}
	return boltBucket{b}
}

// boltBucket is bucket on a bbolt bucket.
type boltBucket struct{ *bolt.Bucket }

func (b boltBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (b boltBucket) ForEachReverse(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if err := fn(k, v); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (b boltBucket) Len() int { return b.Stats().KeyN }

// get decodes the record at key; found is false if there is none.
func get[T any](b bucket, key []byte) (rec T, found bool, err error) {
	raw := b.Get(key)
	if raw == nil {
		return rec, false, nil
	}
	rec, err = decode[T](raw)
	return rec, err == nil, err
}

func put[T any](b bucket, key []byte, rec T) error {
	raw, err := encode(rec)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// idKey is the key of a record keyed by a positive int: big-endian, so that
// keys sort numerically.
func idKey(id int) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(id))
}

// historyKey sorts by finish time, then by runner name.
func historyKey(finished time.Time, name string) []byte {
	ns := max(finished.UnixNano(), 0)
	return append(binary.BigEndian.AppendUint64(nil, uint64(ns)), name...)
}

// historyKeyTime is the finish time encoded in a history key.
func historyKeyTime(key []byte) (time.Time, bool) {
	if len(key) < 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(key[:8]))).UTC(), true
}

// backend runs the transactions of the record logic: bbolt (the file) or
// etcd (EtcdOptions).
type backend interface {
	// view runs fn on a consistent snapshot.
	view(fn func(txn) error) error
	// update runs fn and commits its writes atomically; fn may run more
	// than once. It returns fn's own error as it is.
	update(fn func(txn) error) error
	// batch is update, possibly sharing a commit with concurrent callers.
	batch(fn func(txn) error) error
}

// boltBackend is backend on the bbolt file.
type boltBackend struct{ db *bolt.DB }

func (b boltBackend) view(fn func(txn) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltBackend) update(fn func(txn) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltBackend) batch(fn func(txn) error) error {
	return b.db.Batch(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (s *Store) view(fn func(txn) error) error {
	return s.kv.view(fn)
}

func (s *Store) update(fn func(txn) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	var fnErr error
	err := s.kv.update(func(tx txn) error {
		fnErr = fn(tx)
		return fnErr
	})
	return s.noteWrite(err, fnErr)
}

// noteWrite records the outcome of a write transaction for WriteHealth.
// Only the commit counts: an error fn returned itself (not found, exists,
// a record that cannot be encoded) says nothing about the file.
func (s *Store) noteWrite(err, fnErr error) error {
	if err == nil || err != fnErr { //nolint:errorlint // identity: was it fn's own error?
		s.health.note(err, s.clock())
	}
	return err
}

// batch runs fn in a transaction shared with concurrent batch callers. fn
// may run more than once (bbolt re-runs a batch when one of its functions
// fails), so it must only touch the transaction and its own result
// variables, and it reports expected outcomes (not found, exists) through
// those variables rather than as errors, which would abort the whole batch.
func (s *Store) batch(fn func(txn) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	var fnErr error
	err := s.kv.batch(func(tx txn) error {
		fnErr = fn(tx)
		return fnErr
	})
	return s.noteWrite(err, fnErr)
}
