// Package replica is one replica's place among the replicas that share
// the targets through etcd: its lease, its membership, and its ownership
// of targets, each with a fencing token.
//
// A replica holds one lease and renews it itself. It owns a target through
// a key on that lease; the key's create revision is the ownership's
// fencing token, and every write for the target is a transaction that
// compares it (Write), so a replica that lost the key (paused or cut off
// past its lease) can never write after the next owner. It stops acting on
// its targets by its own safe deadline, the send time of the last renewal
// etcd acknowledged plus the TTL (SafeUntil): etcd restarts the TTL when
// the renewal arrives, after it was sent, so the lease cannot expire
// before that deadline. The client library's keep-alive channel is not
// used: it closes only after etcd let the lease go, which may be after
// another replica took the key.
package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
)

// Errors of ownership.
var (
	// ErrOwnedElsewhere: another replica owns the target.
	ErrOwnedElsewhere = errors.New("owned by another replica")
	// ErrNotOwned: this replica does not own the target (any more).
	ErrNotOwned = errors.New("not owned by this replica")
	// ErrUnsafe: the safe deadline has passed; the lease may be gone.
	ErrUnsafe = errors.New("past the lease's safe deadline")
	// ErrLeaseLost: etcd no longer knows the lease.
	ErrLeaseLost = errors.New("lease lost")
	// ErrIDInUse: a live replica has joined with the same ID.
	ErrIDInUse = errors.New("replica ID in use by a live replica")
)

// Config configures a replica.
type Config struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Prefix is the key prefix of one cluster of replicas.
	Prefix string
	// ID names the replica. Required.
	ID string
	// TTL is the lease's time to live, whole seconds (default 10s); a dead
	// replica's targets move after it.
	TTL time.Duration
	// Logger receives the replica's logs (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultTTL is the lease TTL a zero Config gets.
const DefaultTTL = 10 * time.Second

// DefaultConfig returns the defaults Validate fills in.
func DefaultConfig() Config { return Config{TTL: DefaultTTL} }

// Validate fills in defaults and reports the first invalid setting.
func (c *Config) Validate() error {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.Client == nil:
		return setting.Invalid("Client", "etcd client is required")
	case strings.TrimSpace(c.ID) == "":
		return setting.Invalid("ID", "replica ID is required")
	}
	return CheckTTL(c.TTL)
}

// CheckTTL reports whether ttl can be a lease's TTL: etcd counts whole
// seconds.
func CheckTTL(ttl time.Duration) error {
	if ttl < time.Second || ttl%time.Second != 0 {
		return setting.Invalid("TTL", "lease TTL must be whole seconds, at least 1s, got %s", ttl)
	}
	return nil
}

// Replica is a joined replica. Run renews its lease.
type Replica struct {
	cfg Config
	// changed receives when what Ownership.Mine answers may have changed
	// (see Changed).
	changed chan struct{}

	mu        sync.Mutex
	lease     clientv3.LeaseID
	safeUntil time.Time
	gone      bool             // the lease is lost (until a rejoin) or the replica left
	left      bool             // Leave was called: gone for good
	owned     map[string]int64 // fencing token (create revision) by target
	leader    int64            // fencing token of the leadership; 0: not the leader
}

// Join grants the replica's lease and registers it as a member. A live
// member with the same ID is ErrIDInUse: two replicas with one ID would
// each take the other's targets for their own.
func Join(ctx context.Context, cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("replica config: %w", err)
	}
	r := &Replica{cfg: cfg, changed: make(chan struct{}, 1), owned: map[string]int64{}}
	if err := r.join(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// join grants a new lease and registers the membership on it.
func (r *Replica) join(ctx context.Context) error {
	sent := r.cfg.Now()
	lease, err := r.cfg.Client.Grant(ctx, int64(r.cfg.TTL/time.Second))
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	me, err := json.Marshal(Member{ID: r.cfg.ID, Joined: sent.UTC()})
	if err != nil {
		return fmt.Errorf("register member %s: %w", r.cfg.ID, err)
	}
	key := r.memberKey(r.cfg.ID)
	resp, err := r.cfg.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(me), clientv3.WithLease(lease.ID))).
		Commit()
	if err == nil && !resp.Succeeded {
		err = ErrIDInUse
	}
	if err != nil {
		// The lease would hold nothing: let it go now, not at its TTL.
		_, _ = r.cfg.Client.Revoke(context.WithoutCancel(ctx), lease.ID)
		return fmt.Errorf("register member %s: %w", r.cfg.ID, err)
	}
	r.mu.Lock()
	r.lease, r.safeUntil, r.gone = lease.ID, sent.Add(r.cfg.TTL), false
	r.mu.Unlock()
	return nil
}

// leaseID returns the replica's current lease.
func (r *Replica) leaseID() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Changed receives when the answer of Ownership.Mine may have changed: a
// member came or went, an ownership was released or expired (Watch), the
// safe deadline passed or was regained, the lease was lost or granted
// again. One receive may stand for several changes.
func (r *Replica) Changed() <-chan struct{} { return r.changed }

func (r *Replica) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// ID is the replica's ID.
func (r *Replica) ID() string { return r.cfg.ID }

// Run renews the lease every third of the TTL until ctx ends or the
// replica leaves. A renewal that fails is retried at the next tick: the
// safe deadline simply stops moving. When etcd no longer knows the lease
// (it expired while etcd was out of reach, or this process was paused),
// every ownership is forgotten and the replica joins again with a new
// lease, at each tick until that works: it recovers without a restart.
func (r *Replica) Run(ctx context.Context) error {
	interval := r.cfg.TTL / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		r.mu.Lock()
		gone, left := r.gone, r.left
		r.mu.Unlock()
		if left {
			return nil
		}
		if gone {
			if err := r.join(ctx); err != nil {
				if ctx.Err() == nil && !warned {
					r.cfg.Logger.Warn("join again after losing the lease; retrying", "replica", r.cfg.ID, "err", err)
					warned = true
				}
				continue
			}
			warned = false
			r.cfg.Logger.Info("joined again with a new lease", "replica", r.cfg.ID)
			r.notify()
			continue
		}
		wasSafe := r.Safe()
		err := r.renew(ctx, interval)
		switch {
		case errors.Is(err, ErrLeaseLost):
			r.lose()
			r.cfg.Logger.Warn("lease lost: every target is given up; joining again", "replica", r.cfg.ID)
			r.notify()
		case err != nil && ctx.Err() == nil:
			r.cfg.Logger.Warn("renew lease", "err", err, "safe_until", r.SafeUntil())
		}
		if r.Safe() != wasSafe {
			r.notify()
		}
	}
}

// renew renews the lease once; the call gets at most timeout.
func (r *Replica) renew(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sent := r.cfg.Now()
	lease := r.leaseID()
	resp, err := r.cfg.Client.KeepAliveOnce(ctx, lease)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("renew lease %x: %w", lease, ErrLeaseLost)
		}
		return fmt.Errorf("renew lease %x: %w", lease, err)
	}
	if resp.TTL <= 0 {
		return fmt.Errorf("renew lease %x: %w", lease, ErrLeaseLost)
	}
	r.mu.Lock()
	if until := sent.Add(r.cfg.TTL); until.After(r.safeUntil) && !r.gone && r.lease == lease {
		r.safeUntil = until
	}
	r.mu.Unlock()
	return nil
}

// lose makes the replica unsafe and forgets its ownerships until it joins
// again: a renewal still in flight cannot bring the deadline back.
func (r *Replica) lose() {
	r.mu.Lock()
	r.gone, r.safeUntil, r.owned, r.leader = true, time.Time{}, map[string]int64{}, 0
	r.mu.Unlock()
}

// SafeUntil is the replica's safe deadline: it may act on its targets
// until then.
func (r *Replica) SafeUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.safeUntil
}

// Safe reports whether the safe deadline is still ahead.
func (r *Replica) Safe() bool { return r.cfg.Now().Before(r.SafeUntil()) }

// Claim takes the ownership of target if no replica holds it, and returns
// its fencing token. Claiming a target this replica owns returns the same
// token. Another replica's ownership is ErrOwnedElsewhere.
func (r *Replica) Claim(ctx context.Context, target string) (int64, error) {
	token, err := r.claim(ctx, r.ownerKey(target), func(token int64) { r.owned[target] = token })
	if err != nil {
		return 0, fmt.Errorf("claim %s: %w", target, err)
	}
	return token, nil
}

// ClaimLeader takes the leadership if no replica holds it: the leader
// does the chores that no target's owner does (the records of targets no
// longer listed, the history), fenced on its own token.
func (r *Replica) ClaimLeader(ctx context.Context) error {
	if _, err := r.claim(ctx, r.leaderKey(), func(token int64) { r.leader = token }); err != nil {
		return fmt.Errorf("claim the leadership: %w", err)
	}
	return nil
}

// ReleaseLeader gives the leadership up, if it is this replica's.
func (r *Replica) ReleaseLeader(ctx context.Context) error {
	r.mu.Lock()
	token := r.leader
	r.leader = 0
	r.mu.Unlock()
	if token == 0 {
		return nil
	}
	if err := r.releaseKey(ctx, r.leaderKey(), token); err != nil {
		return fmt.Errorf("release the leadership: %w", err)
	}
	return nil
}

// Leader reports whether this replica holds the leadership and may act.
func (r *Replica) Leader() bool {
	r.mu.Lock()
	token := r.leader
	r.mu.Unlock()
	return token != 0 && r.Safe()
}

// claim creates key on the replica's lease if it does not exist, and
// returns its create revision, the fencing token; keep records the token
// (under r.mu) unless the lease was lost meanwhile.
func (r *Replica) claim(ctx context.Context, key string, keep func(token int64)) (int64, error) {
	if !r.Safe() {
		return 0, ErrUnsafe
	}
	lease := r.leaseID()
	resp, err := r.cfg.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, r.cfg.ID, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, err
	}
	var token int64
	if resp.Succeeded {
		token = resp.Header.Revision // the put's revision: the key's create revision
	} else {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 { // deleted in between: try again later
			return 0, ErrOwnedElsewhere
		}
		kv := kvs[0]
		if string(kv.Value) != r.cfg.ID || clientv3.LeaseID(kv.Lease) != lease {
			return 0, fmt.Errorf("%w (%s)", ErrOwnedElsewhere, kv.Value)
		}
		token = kv.CreateRevision
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone || r.lease != lease { // the lease was lost meanwhile
		return 0, ErrUnsafe
	}
	keep(token)
	return token, nil
}

// Owner returns the replica owning target, "" if none.
func (r *Replica) Owner(ctx context.Context, target string) (string, error) {
	resp, err := r.cfg.Client.Get(ctx, r.ownerKey(target))
	if err != nil {
		return "", fmt.Errorf("owner of %s: %w", target, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// Release gives up the ownership of target, if the key is still ours.
func (r *Replica) Release(ctx context.Context, target string) error {
	r.mu.Lock()
	token, ok := r.owned[target]
	delete(r.owned, target)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if err := r.releaseKey(ctx, r.ownerKey(target), token); err != nil {
		return fmt.Errorf("release %s: %w", target, err)
	}
	return nil
}

// releaseKey deletes key if its create revision is still token.
func (r *Replica) releaseKey(ctx context.Context, key string, token int64) error {
	_, err := r.cfg.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", token)).
		Then(clientv3.OpDelete(key)).
		Commit()
	return err
}

// Write applies ops for target in one transaction fenced on the target's
// ownership: it fails, changing nothing, with ErrUnsafe past the safe
// deadline and with ErrNotOwned when the key is not this ownership's any
// more (another replica may own it now); the ownership is then forgotten.
// cmps are further conditions of the caller (a record's own revision);
// when one fails, Write returns (false, nil).
func (r *Replica) Write(ctx context.Context, target string, cmps []clientv3.Cmp, ops ...clientv3.Op) (bool, error) {
	r.mu.Lock()
	token, ok := r.owned[target]
	r.mu.Unlock()
	if !ok {
		return false, fmt.Errorf("write for %s: %w", target, ErrNotOwned)
	}
	if !r.Safe() {
		return false, fmt.Errorf("write for %s: %w", target, ErrUnsafe)
	}
	key := r.ownerKey(target)
	fence := clientv3.Compare(clientv3.CreateRevision(key), "=", token)
	all := append([]clientv3.Cmp{fence}, cmps...)
	resp, err := r.cfg.Client.Txn(ctx).If(all...).Then(ops...).
		Else(clientv3.OpTxn([]clientv3.Cmp{fence}, nil, nil)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("write for %s: %w", target, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	if !resp.Responses[0].GetResponseTxn().Succeeded {
		r.mu.Lock()
		if r.owned[target] == token {
			delete(r.owned, target)
		}
		r.mu.Unlock()
		return false, fmt.Errorf("write for %s: %w", target, ErrNotOwned)
	}
	return false, nil
}

// Member is a live replica: its ID and when it joined (by its own clock).
type Member struct {
	ID     string    `json:"id"`
	Joined time.Time `json:"joined"`
}

// Fence returns the conditions under which this replica may write
// target's records: it owns target (the key's create revision is still
// its token); or nobody owns target and this replica is still the leader
// (the records of a target no longer listed). ok is false otherwise, and
// past the safe deadline. It fences the store's writes (store.Fencer).
func (r *Replica) Fence(target string) ([]clientv3.Cmp, bool) {
	r.mu.Lock()
	token, owned := r.owned[target]
	leader := r.leader
	r.mu.Unlock()
	switch {
	case !r.Safe():
		return nil, false
	case owned:
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(r.ownerKey(target)), "=", token)}, true
	case leader != 0:
		return []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(r.ownerKey(target)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(r.leaderKey()), "=", leader),
		}, true
	}
	return nil, false
}

// Members returns the live replicas, sorted by ID.
func (r *Replica) Members(ctx context.Context) ([]Member, error) {
	resp, err := r.cfg.Client.Get(ctx, r.memberKey(""), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	out := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m); err != nil || m.ID == "" {
			return nil, fmt.Errorf("list members: member %s: not a member record", kv.Key)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Leave revokes the lease: every ownership and the membership go at once,
// so the other replicas need not wait out the TTL.
func (r *Replica) Leave(ctx context.Context) error {
	lease := r.leaseID()
	r.lose()
	r.mu.Lock()
	r.left = true
	r.mu.Unlock()
	if _, err := r.cfg.Client.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("revoke lease: %w", err)
	}
	return nil
}

func (r *Replica) memberKey(id string) string { return r.cfg.Prefix + "members/" + id }
func (r *Replica) leaderKey() string          { return r.cfg.Prefix + "leader" }
func (r *Replica) ownerKey(target string) string {
	return r.cfg.Prefix + "owners/" + target
}

// LiveMembers returns the IDs of the live replicas under prefix, for a
// reader that is not a replica (state migrate): a member's key lives on
// its lease, so a stopped replica's goes at once, a killed one's after
// the TTL.
func LiveMembers(ctx context.Context, c *clientv3.Client, prefix string) ([]string, error) {
	resp, err := c.Get(ctx, prefix+"members/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list the replicas: %w", err)
	}
	ids := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ids = append(ids, strings.TrimPrefix(string(kv.Key), prefix+"members/"))
	}
	return ids, nil
}

// Owners returns the replica owning each owned target under prefix, for
// a reader that is not a replica (scalesets ls).
func Owners(ctx context.Context, c *clientv3.Client, prefix string) (map[string]string, error) {
	resp, err := c.Get(ctx, prefix+"owners/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list target owners: %w", err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix+"owners/")] = string(kv.Value)
	}
	return out, nil
}

// Assign returns the member that should own target: rendezvous hashing, so
// each target's choice depends only on the target and the members, and a
// member leaving moves only its own targets.
func Assign(target string, members []string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		if s := score(target, m); best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// score is the FNV-1a 64 hash of target and member, mixed (splitmix64) so
// that near-equal names spread.
func score(target, member string) uint64 {
	h := uint64(14695981039346656037)
	for _, s := range []string{target, "\x00", member} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
