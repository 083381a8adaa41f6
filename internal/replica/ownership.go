package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
)

// Ownership divides the listed targets among the live replicas: each
// target goes to the member rendezvous hashing picks for it (Assign), among
// the members that joined at least JoinDelay ago, so a replica that comes
// back does not take targets over at once and flap. It implements the
// controller's Ownership.
//
// A target this replica gives up is left out of Mine's answer first, so
// the controller stops its worker (closing its GitHub session); its key is
// released at the next call, and only then can its new owner claim it: a
// clean hand-over never has two sessions. A target the replica is given is
// served once it could claim it: a dead owner's key goes with its lease.
type Ownership struct {
	r         *Replica
	joinDelay time.Duration

	mu      sync.Mutex
	release []string  // targets given up at the last call, to release now
	wakeAt  time.Time // when a member inside its join delay becomes eligible
}

// NewOwnership returns the ownership of r's targets; members that joined
// less than joinDelay ago get targets only when no other member can.
func NewOwnership(r *Replica, joinDelay time.Duration) *Ownership {
	return &Ownership{r: r, joinDelay: joinDelay}
}

// Mine returns the listed targets this replica serves now. Past the safe
// deadline it serves none. Its etcd calls end by the safe deadline: with
// etcd out of reach a call would wait for a connection, and the
// controller, waiting for the answer, would go on acting on its targets
// past the deadline. A call cut by the deadline answers "none".
func (o *Ownership) Mine(ctx context.Context, listed []myshoes.Target) ([]myshoes.Target, error) {
	if !o.r.Safe() {
		return nil, nil
	}
	ctx, cancel := context.WithDeadline(ctx, o.r.SafeUntil())
	defer cancel()
	mine, err := o.mine(ctx, listed)
	if err != nil && !o.r.Safe() {
		return nil, nil
	}
	return mine, err
}

func (o *Ownership) mine(ctx context.Context, listed []myshoes.Target) ([]myshoes.Target, error) {
	o.mu.Lock()
	release := o.release
	o.release = nil
	o.mu.Unlock()
	for i, id := range release {
		if err := o.r.Release(ctx, id); err != nil {
			o.mu.Lock()
			o.release = append(release[i:], o.release...) // again at the next call
			o.mu.Unlock()
			return nil, err
		}
	}
	members, err := o.r.Members(ctx)
	if err != nil {
		return nil, err
	}
	eligible := o.eligible(members)
	o.lead(ctx, eligible)

	var mine []myshoes.Target
	var giveUp []string
	for _, t := range listed {
		if Assign(t.ID, eligible) != o.r.ID() {
			if o.r.owns(t.ID) {
				giveUp = append(giveUp, t.ID)
			}
			continue
		}
		switch _, err := o.r.Claim(ctx, t.ID); {
		case err == nil:
			mine = append(mine, t)
		case errors.Is(err, ErrOwnedElsewhere):
			// Its owner has not let it go yet (a hand-over in progress,
			// or a dead owner's lease still running).
		default:
			return nil, fmt.Errorf("targets of replica %s: %w", o.r.ID(), err)
		}
	}
	// Owned targets no longer listed are given up too.
	for _, id := range o.r.ownedTargets() {
		if !slices.ContainsFunc(listed, func(t myshoes.Target) bool { return t.ID == id }) && !slices.Contains(giveUp, id) {
			giveUp = append(giveUp, id)
		}
	}
	o.mu.Lock()
	o.release = giveUp
	o.mu.Unlock()
	if len(giveUp) > 0 {
		// Ask to be called again once the controller has stopped those
		// targets' workers: the keys are released then, not at the next
		// periodic sync.
		o.r.notify()
	}
	return mine, nil
}

// leaderName stands for the leadership in Assign: no target has this ID.
const leaderName = "\x00leader"

// lead claims the leadership when rendezvous gives it to this replica,
// and gives it up when it gives it to another. A failure is logged: the
// chores wait for the next call, the targets must not.
func (o *Ownership) lead(ctx context.Context, eligible []string) {
	var err error
	if Assign(leaderName, eligible) == o.r.ID() {
		if err = o.r.ClaimLeader(ctx); errors.Is(err, ErrOwnedElsewhere) {
			err = nil // the last leader has not let go yet
		}
	} else {
		err = o.r.ReleaseLeader(ctx)
	}
	if err != nil {
		o.r.cfg.Logger.Warn("leadership", "replica", o.r.ID(), "err", err)
	}
}

// Leader reports whether this replica does the chores no target's owner
// does (controller.Ownership).
func (o *Ownership) Leader() bool { return o.r.Leader() }

// HandOverGrace is how long a replica that lost a target may still be
// acting on it: until its safe deadline, at most a TTL after this one
// could claim the target (controller.Ownership).
func (o *Ownership) HandOverGrace() time.Duration { return o.r.cfg.TTL }

// eligible returns the IDs of the members that may be given targets: those
// that joined at least joinDelay ago, or every member when none did (a
// cluster starting up).
func (o *Ownership) eligible(members []Member) []string {
	now := o.r.cfg.Now()
	var old, all []string
	var wakeAt time.Time
	for _, m := range members {
		all = append(all, m.ID)
		if at := m.Joined.Add(o.joinDelay); !now.Before(at) {
			old = append(old, m.ID)
		} else if wakeAt.IsZero() || at.Before(wakeAt) {
			wakeAt = at
		}
	}
	if len(old) == 0 {
		return all
	}
	o.mu.Lock()
	o.wakeAt = wakeAt
	o.mu.Unlock()
	return old
}

// Changed receives when Mine's answer may have changed (Replica.Changed,
// woken by Watch too).
func (o *Ownership) Changed() <-chan struct{} { return o.r.Changed() }

// Watch wakes Changed until ctx ends: on every change of the members and
// the owners in etcd (a replica joined or left, a dead replica's lease
// expired, an ownership was released), when the safe deadline passes, and
// when a member's join delay ends. Run it next to Replica.Run, so that
// targets move within seconds, not at the next periodic sync.
func (o *Ownership) Watch(ctx context.Context) error {
	r := o.r
	events := make(chan struct{}, 1)
	for _, prefix := range []string{r.memberKey(""), r.ownerKey(""), r.leaderKey()} {
		go o.watchPrefix(ctx, prefix, events)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	safe := r.Safe()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-events:
			r.notify()
		case <-timer.C:
		}
		if now := r.Safe(); now != safe {
			safe = now
			r.notify()
		}
		o.mu.Lock()
		wakeAt := o.wakeAt
		if !wakeAt.IsZero() && !r.cfg.Now().Before(wakeAt) {
			o.wakeAt = time.Time{}
			r.notify()
		}
		o.mu.Unlock()
		timer.Reset(o.nextCheck(wakeAt))
	}
}

// nextCheck is how long Watch waits before it looks at the safe deadline
// and the join delays again: until the nearer of the two, a little past
// it, and at most a third of the TTL.
func (o *Ownership) nextCheck(wakeAt time.Time) time.Duration {
	r := o.r
	now := r.cfg.Now()
	wait := r.cfg.TTL / 3
	for _, at := range []time.Time{r.SafeUntil(), wakeAt} {
		if d := at.Sub(now) + time.Millisecond; d > 0 && d < wait {
			wait = d
		}
	}
	return wait
}

// watchPrefix sends to events on every change under prefix until ctx
// ends. A watch that fails (etcd restarted or out of reach) is made again
// after a pause, and counts as a change: something may have been missed.
func (o *Ownership) watchPrefix(ctx context.Context, prefix string, events chan<- struct{}) {
	send := func() {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range o.r.cfg.Client.Watch(wctx, prefix, clientv3.WithPrefix()) {
			send()
			if resp.Err() != nil {
				break
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(o.r.cfg.TTL / 3):
			send()
		}
	}
}

// Owned returns the targets the replica holds (metrics.ReplicaSource).
func (r *Replica) Owned() []string { return r.ownedTargets() }

// Owns reports whether the replica holds target's ownership now: it owns
// the key and its safe deadline is ahead.
func (r *Replica) Owns(target string) bool { return r.owns(target) && r.Safe() }

// owns reports whether the replica holds target's ownership.
func (r *Replica) owns(target string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.owned[target]
	return ok
}

// ownedTargets returns the targets the replica holds.
func (r *Replica) ownedTargets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.owned))
	for id := range r.owned {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
