package controller

import (
	"fmt"
	"sort"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// ScaleSetStatus is what `scalesets ls` shows of one target.
type ScaleSetStatus struct {
	TargetID   string   `json:"target_id"`
	Scope      string   `json:"scope"`
	ScaleSet   string   `json:"scale_set"`
	ScaleSetID int      `json:"scale_set_id"`
	Labels     []string `json:"labels"`
	// GitHubLabels are the labels GitHub holds for the scale set;
	// DroppedLabels are the labels it was given but did not keep.
	GitHubLabels  []string `json:"github_labels,omitempty"`
	DroppedLabels []string `json:"dropped_labels,omitempty"`
	SessionID     string   `json:"session_id"`
	// PendingAcquisitions counts the available jobs (GHES) not acquired
	// yet; AcquireError says why acquiring keeps failing.
	PendingAcquisitions int    `json:"pending_acquisitions,omitempty"`
	AcquireError        string `json:"acquire_error,omitempty"`
	// StuckProvisions counts AddInstance calls running for longer than
	// ProvisionStuckAfter.
	StuckProvisions int `json:"stuck_provisions,omitempty"`
	// MinRunners and MaxRunners are the target's policy, and PolicyRule
	// the rule of the policy file that gave it ("defaults": none matched).
	MinRunners              int                       `json:"min_runners"`
	MaxRunners              int                       `json:"max_runners"`
	PolicyRule              string                    `json:"policy_rule,omitempty"`
	Desired                 int                       `json:"desired"`
	Runners                 map[store.RunnerState]int `json:"runners"`
	Statistics              *github.Statistics        `json:"statistics,omitempty"`
	LastPoll                time.Time                 `json:"last_poll"`
	TargetStatus            string                    `json:"target_status"`
	TargetStatusDescription string                    `json:"target_status_description,omitempty"`
	Serving                 bool                      `json:"serving"`
	Error                   string                    `json:"error,omitempty"`
	// Owner is the replica that owns the target (--store etcd; set by
	// the inspecting commands).
	Owner string `json:"owner,omitempty"`

	// pollSince is when the poll in flight was sent (zero: none), and
	// pollErr why the last poll failed: for readiness, live only.
	pollSince time.Time
	pollErr   string
}

// SyncStatus is the state of the target list sync.
type SyncStatus struct {
	LastSuccess time.Time `json:"last_success"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"failures"`
}

// Status returns the target sync state.
func (c *Controller) Status() SyncStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return SyncStatus(c.sync)
}

// ScaleSets returns the status of every target: the served ones live, the
// others as the store last saw them.
func (c *Controller) ScaleSets() ([]ScaleSetStatus, error) {
	return ScaleSetsFromStore(c.store, c.live())
}

// live returns the live status of the served targets, by target ID.
func (c *Controller) live() map[string]ScaleSetStatus {
	c.mu.Lock()
	workers := make([]*targetWorker, 0, len(c.workers))
	for _, w := range c.workers {
		workers = append(workers, w)
	}
	c.mu.Unlock()

	out := make(map[string]ScaleSetStatus, len(workers))
	for _, w := range workers {
		w.mu.Lock()
		st := ScaleSetStatus{
			TargetID:                w.target.ID,
			Scope:                   w.target.Scope,
			TargetStatus:            w.target.Status,
			TargetStatusDescription: w.target.StatusDescription,
			Serving:                 true,
			Error:                   w.err,
			MinRunners:              w.pol.MinRunners,
			MaxRunners:              w.pol.MaxRunners,
			PolicyRule:              w.pol.Rule,
		}
		set := w.set
		w.mu.Unlock()
		if set != nil {
			st.ScaleSet, st.ScaleSetID, st.Labels = set.name, set.id, set.labels
			st.Desired = int(set.desired.Load())
			set.mu.Lock()
			st.SessionID, st.LastPoll, st.AcquireError = set.sessionID, set.lastPoll, set.acquireErr
			st.pollSince, st.pollErr = set.pollSince, set.pollErr
			stats := set.stats
			set.mu.Unlock()
			st.Statistics = &stats
			st.StuckProvisions, _ = c.stuckAdds(set.id)
		}
		out[st.TargetID] = st
	}
	return out
}

// ScaleSetsFromStore builds the status of every stored scale set, overlaid
// with live status where given. The CLI uses it with no live status when
// no daemon runs.
func ScaleSetsFromStore(st Store, live map[string]ScaleSetStatus) ([]ScaleSetStatus, error) {
	recs, err := st.ListScaleSets()
	if err != nil {
		return nil, fmt.Errorf("list scale sets: %w", err)
	}
	counts, err := st.CountRunners()
	if err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	sessions, err := st.ListSessions()
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	sessionOf := make(map[int]store.Session, len(sessions))
	for _, s := range sessions {
		sessionOf[s.ScaleSetID] = s
	}

	byTarget := make(map[string]ScaleSetStatus, len(recs)+len(live))
	for _, r := range recs {
		byTarget[r.TargetID] = ScaleSetStatus{
			TargetID:                r.TargetID,
			Scope:                   r.Scope,
			ScaleSet:                r.Name,
			ScaleSetID:              r.ScaleSetID,
			Labels:                  r.Labels,
			GitHubLabels:            r.GitHubLabels,
			DroppedLabels:           r.DroppedLabels,
			SessionID:               sessionOf[r.ScaleSetID].SessionID,
			TargetStatus:            r.TargetStatus,
			TargetStatusDescription: r.TargetStatusDescription,
			Error:                   r.LastError,
			MinRunners:              r.MinRunners,
			MaxRunners:              r.MaxRunners,
			PolicyRule:              r.PolicyRule,
		}
	}
	for id, l := range live {
		if rec, ok := byTarget[id]; ok {
			if l.ScaleSetID == 0 {
				l.ScaleSet, l.ScaleSetID, l.Labels = rec.ScaleSet, rec.ScaleSetID, rec.Labels
			}
			if l.ScaleSetID == rec.ScaleSetID {
				l.GitHubLabels, l.DroppedLabels = rec.GitHubLabels, rec.DroppedLabels
			}
		}
		byTarget[id] = l
	}
	out := make([]ScaleSetStatus, 0, len(byTarget))
	for _, s := range byTarget {
		s.Runners = counts[s.ScaleSetID]
		s.PendingAcquisitions = len(sessionOf[s.ScaleSetID].PendingAcquire)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Scope < out[j].Scope })
	return out, nil
}

// NotReady says why one part of the controller is not ready.
type NotReady struct {
	Target string `json:"target,omitempty"`
	Scope  string `json:"scope,omitempty"`
	Reason string `json:"reason"`
}

// Ready reports whether the controller is ready: the last target sync
// succeeded within 3 sync intervals, writes to the state file succeed,
// plugin processes start (when the plugin can say: pluginStarts), and
// every served target's listener holds a session and is polling it (see
// listening), is not failing to acquire jobs, and has no AddInstance
// running for longer than ProvisionStuckAfter. Otherwise it says what is
// not ready and why.
func (c *Controller) Ready() (bool, []NotReady) {
	now := c.cfg.Now()
	var out []NotReady
	sync := c.Status()
	switch {
	case sync.LastSuccess.IsZero():
		out = append(out, NotReady{Reason: "no successful read of the myshoes target list yet" + lastErr(sync.LastError)})
	case now.Sub(sync.LastSuccess) > 3*c.cfg.SyncInterval:
		out = append(out, NotReady{Reason: fmt.Sprintf("last successful target sync %s ago", now.Sub(sync.LastSuccess).Round(time.Second)) + lastErr(sync.LastError)})
	}
	if h := c.store.WriteHealth(); h.Failing > 0 {
		out = append(out, NotReady{Reason: fmt.Sprintf("state file writes failing: %d in a row for %s: %s",
			h.Failing, now.Sub(h.FailingSince).Round(time.Second), h.LastError)})
	}
	if ps, ok := c.plugin.(pluginStarts); ok {
		if why := ps.StartFailure(); why != "" {
			out = append(out, NotReady{Reason: "plugin: " + why})
		}
	}
	for _, st := range c.live() {
		switch {
		case st.SessionID == "":
			out = append(out, NotReady{Target: st.TargetID, Scope: st.Scope, Reason: "no message session" + lastErr(st.Error)})
		case !listening(st, now, 2*c.cfg.PollHold):
			why := st.pollErr
			if why == "" {
				why = st.Error
			}
			out = append(out, NotReady{Target: st.TargetID, Scope: st.Scope, Reason: "the listener has not polled within 2 poll holds" + lastErr(why)})
		case st.AcquireError != "":
			// Jobs wait on GHES until they are acquired.
			out = append(out, NotReady{Target: st.TargetID, Scope: st.Scope, Reason: st.AcquireError})
		case st.StuckProvisions > 0:
			_, oldest := c.stuckAdds(st.ScaleSetID)
			out = append(out, NotReady{Target: st.TargetID, Scope: st.Scope, Reason: fmt.Sprintf(
				"provisioning stuck: %d AddInstance calls running for more than %s (the oldest for %s)",
				st.StuckProvisions, c.cfg.ProvisionStuckAfter, oldest.Round(time.Second))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Scope < out[j].Scope })
	return len(out) == 0, out
}

// listening reports whether a target's listener keeps its long poll
// going: a poll answered within window, or one is in flight, sent within
// window, and the poll before it did not fail. A long poll answers only
// after the poll hold, so a listener is ready as soon as its first poll
// is sent, not a hold later; a poll in flight for longer than window
// (a hung connection) or polls that keep failing are not listening.
func listening(st ScaleSetStatus, now time.Time, window time.Duration) bool {
	if !st.LastPoll.IsZero() && now.Sub(st.LastPoll) <= window {
		return true
	}
	return !st.pollSince.IsZero() && now.Sub(st.pollSince) <= window && st.pollErr == ""
}

// pluginStarts is a plugin that can say why its processes fail to start
// (the shoes host): a reason while they do, "" once one starts again.
type pluginStarts interface {
	StartFailure() string
}

var _ pluginStarts = (*shoes.Host)(nil)

func lastErr(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}
