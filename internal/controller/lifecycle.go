package controller

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// The runner lifecycle (docs/architecture.md, "Runner lifecycle"). Every
// change of a runner's state goes through transition, and every move to
// history through finish, which check it against this table: a change it
// does not list is an error, never a silent write.

// stateHistory is the lifecycle's end: the record leaves the runners
// bucket for the history. It is not a stored state.
const stateHistory store.RunnerState = "history"

// lifecycle lists, for each state, the states a runner may move to.
var lifecycle = map[store.RunnerState][]store.RunnerState{
	// The JIT config is being requested, or waits for an AddInstance slot.
	store.StatePending: {store.StateConfigured, stateHistory},
	// AddInstance is in flight. The runner may boot and take a job before
	// the plugin answers.
	store.StateConfigured: {store.StateIdle, store.StateBusy, store.StateDeleting, store.StateUnknownInstance, stateHistory},
	store.StateIdle:       {store.StateBusy, store.StateDeleting},
	store.StateBusy:       {store.StateDeleting},
	// A runner that ran a job although its AddInstance answer was never
	// stored becomes unknown-instance: its instance cannot be named.
	store.StateDeleting: {store.StateUnknownInstance, stateHistory},
	// Resolved by name (deleting), or removed by the operator (history).
	store.StateUnknownInstance: {store.StateDeleting, stateHistory},
}

// canMove reports whether the lifecycle allows from → to.
func canMove(from, to store.RunnerState) bool {
	return slices.Contains(lifecycle[from], to)
}

// TransitionError is a state change the lifecycle does not allow.
type TransitionError struct {
	Runner   string
	From, To store.RunnerState
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("runner %s: %s → %s is not a lifecycle transition", e.Runner, e.From, e.To)
}

// errNoChange aborts a store update that has nothing to do; handlers are
// idempotent, so a redelivered message ends here.
var errNoChange = errors.New("no change")

// transition moves runner name to state to, applying edit (may be nil) in
// the same write; edit may refuse with an error, errNoChange among them,
// and must not change the state itself. A runner in state to already is
// errNoChange: every handler is idempotent. A change the lifecycle does
// not allow is a *TransitionError. Like the store's update, edit may run
// more than once, each time on the stored record.
func (c *Controller) transition(name string, to store.RunnerState, edit func(*store.Runner) error) (store.Runner, error) {
	return c.store.UpdateRunner(name, c.move(name, to, edit))
}

// move is the change transition makes to a record: checked against the
// lifecycle, with edit applied and the state's entry time set.
func (c *Controller) move(name string, to store.RunnerState, edit func(*store.Runner) error) func(*store.Runner) error {
	return func(r *store.Runner) error {
		from := r.State
		if from == to {
			return errNoChange
		}
		if !canMove(from, to) {
			return &TransitionError{Runner: name, From: from, To: to}
		}
		if edit != nil {
			if err := edit(r); err != nil {
				return err
			}
			if r.State != from {
				return fmt.Errorf("runner %s: an edit changed the state to %s (use transition)", name, r.State)
			}
		}
		now := c.cfg.Now()
		if r.StateSince == nil {
			r.StateSince = make(map[store.RunnerState]time.Time, 1)
		}
		r.State = to
		r.StateSince[to] = now
		r.UpdatedAt = now
		return nil
	}
}

// recordInstanceAfterHandOver records the instance of a runner whose
// target this replica lost while its AddInstance ran (the answer came
// after the hand-over, so the fenced write was refused): only this
// replica knows the cloud ID. The write is not fenced on the ownership,
// and commits only if the record is unchanged since read. A record still
// waiting for its instance becomes idle, a runner of the new owner; one
// the new owner already gave up on (unknown-instance) goes to deleting, so
// that the new owner deletes the instance; in another state the cloud ID
// is added. A record that has a cloud ID is left alone.
func (c *Controller) recordInstanceAfterHandOver(name string, instance func(*store.Runner) error) (store.Runner, error) {
	return c.store.UpdateRunnerAfterHandOver(name, func(r *store.Runner) error {
		if r.CloudID != "" {
			return errNoChange
		}
		switch r.State {
		case store.StateConfigured:
			return c.move(name, store.StateIdle, instance)(r)
		case store.StateUnknownInstance:
			return c.move(name, store.StateDeleting, instance)(r)
		}
		if err := instance(r); err != nil {
			return err
		}
		r.UpdatedAt = c.cfg.Now()
		return nil
	})
}

// editRunner changes fields of a runner record but never its state.
func (c *Controller) editRunner(name string, edit func(*store.Runner) error) (store.Runner, error) {
	return c.store.UpdateRunner(name, func(r *store.Runner) error {
		from := r.State
		if err := edit(r); err != nil {
			return err
		}
		if r.State != from {
			return fmt.Errorf("runner %s: an edit changed the state to %s (use transition)", name, r.State)
		}
		r.UpdatedAt = c.cfg.Now()
		return nil
	})
}

// finishRunner moves a runner to history with reason, if the lifecycle
// allows it from the stored state.
func (c *Controller) finishRunner(name, reason string) (store.HistoryRecord, error) {
	return c.store.FinishRunnerIf(name, reason, func(r store.Runner) error {
		if !canMove(r.State, stateHistory) {
			return &TransitionError{Runner: name, From: r.State, To: stateHistory}
		}
		return nil
	})
}
