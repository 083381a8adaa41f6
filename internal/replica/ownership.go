package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

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
	release []string // targets given up at the last call, to release now
}

// NewOwnership returns the ownership of r's targets; members that joined
// less than joinDelay ago get targets only when no other member can.
func NewOwnership(r *Replica, joinDelay time.Duration) *Ownership {
	return &Ownership{r: r, joinDelay: joinDelay}
}

// Mine returns the listed targets this replica serves now. Past the safe
// deadline it serves none.
func (o *Ownership) Mine(ctx context.Context, listed []myshoes.Target) ([]myshoes.Target, error) {
	o.mu.Lock()
	release := o.release
	o.release = nil
	o.mu.Unlock()
	for _, id := range release {
		if err := o.r.Release(ctx, id); err != nil {
			return nil, err
		}
	}
	if !o.r.Safe() {
		return nil, nil
	}
	members, err := o.r.Members(ctx)
	if err != nil {
		return nil, err
	}
	eligible := o.eligible(members)

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
	return mine, nil
}

// eligible returns the IDs of the members that may be given targets: those
// that joined at least joinDelay ago, or every member when none did (a
// cluster starting up).
func (o *Ownership) eligible(members []Member) []string {
	now := o.r.cfg.Now()
	var old, all []string
	for _, m := range members {
		all = append(all, m.ID)
		if now.Sub(m.Joined) >= o.joinDelay {
			old = append(old, m.ID)
		}
	}
	if len(old) == 0 {
		return all
	}
	return old
}

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
