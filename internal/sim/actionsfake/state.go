package actionsfake

import (
	"fmt"
	"slices"
	"time"
)

// Statistics is RunnerScaleSetStatistic on the wire, computed from state when sent.
type Statistics struct {
	TotalAvailableJobs     int `json:"totalAvailableJobs"`
	TotalAcquiredJobs      int `json:"totalAcquiredJobs"`
	TotalAssignedJobs      int `json:"totalAssignedJobs"`
	TotalRunningJobs       int `json:"totalRunningJobs"`
	TotalRegisteredRunners int `json:"totalRegisteredRunners"`
	TotalBusyRunners       int `json:"totalBusyRunners"`
	TotalIdleRunners       int `json:"totalIdleRunners"`
}

// stats computes the statistics of a scale set. Assigned includes running. Lock held.
func (s *Server) stats(ss *scaleSet) Statistics {
	var st Statistics
	for _, j := range ss.jobs {
		if j.ss != ss {
			continue
		}
		switch j.state {
		case jobAvailable:
			st.TotalAvailableJobs++
		case jobAcquired:
			st.TotalAcquiredJobs++
		case jobAssigned:
			st.TotalAssignedJobs++
		case jobRunning:
			st.TotalAssignedJobs++
			st.TotalRunningJobs++
		}
	}
	for _, rn := range ss.runners {
		switch rn.state {
		case runnerOffline:
			st.TotalRegisteredRunners++
		case runnerIdle:
			st.TotalRegisteredRunners++
			st.TotalIdleRunners++
		case runnerBusy:
			st.TotalRegisteredRunners++
			st.TotalBusyRunners++
		}
	}
	return st
}

// Violation kinds: protocol mistakes of a client. A correct client causes none.
const (
	ViolationJITMismatch       = "jit config mismatch"
	ViolationDoubleConnect     = "double connect"
	ViolationStaleToken        = "stale token"
	ViolationAcquireUnknown    = "acquire unknown request"
	ViolationAckUnknownMessage = "ack unknown message"
	ViolationMissingAPIVersion = "missing api-version"
)

// Violation is one recorded protocol violation.
type Violation struct {
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
	Time   time.Time `json:"time"`
}

// violate records a violation. Lock held.
func (s *Server) violate(kind, format string, args ...any) {
	v := Violation{Kind: kind, Detail: fmt.Sprintf(format, args...), Time: s.now().UTC()}
	s.violations = append(s.violations, v)
	s.log.Debug("protocol violation", "kind", v.Kind, "detail", v.Detail)
}

// State is a snapshot of the fake for tests and the control API.
type State struct {
	ScaleSets []ScaleSetState `json:"scale_sets"`
	// ScopeQueued counts jobs waiting at scope level for a matching scale set.
	ScopeQueued map[string]int `json:"scope_queued"`
	// Calls counts requests by route pattern ("POST /_actions/.../{id}/generatejitconfig"); "unmatched" for 404s.
	Calls      map[string]int `json:"calls"`
	Violations []Violation    `json:"violations"`
	Jobs       []JobState     `json:"jobs"`
	Runners    []RunnerState  `json:"runners"`
	Faults     []FaultState   `json:"faults"`
}

// ScaleSetState describes one live scale set.
type ScaleSetState struct {
	ID     int       `json:"id"`
	Name   string    `json:"name"`
	Scope  string    `json:"scope"`
	Labels []string  `json:"labels"`
	Jobs   JobCounts `json:"jobs"`
	// Session is the live session, if any (not an expired or evicted one).
	Session *SessionState `json:"session"`
	// SessionsCreated counts every successful session create.
	SessionsCreated int `json:"sessions_created"`
	// Evictions counts sessions evicted or expired by the service.
	Evictions int           `json:"evictions"`
	Runners   RunnerCounts  `json:"runners"`
	Conflicts int           `json:"conflicts"`
	Messages  MessageCounts `json:"messages"`
	// MaxCapacity is the last X-ScaleSetMaxCapacity a poll reported (0 before any).
	MaxCapacity int `json:"max_capacity"`
	// PeakAssigned is the most jobs assigned or running at once.
	PeakAssigned int        `json:"peak_assigned"`
	Statistics   Statistics `json:"statistics"`
}

// JobCounts counts a scale set's jobs by state.
type JobCounts struct {
	Queued    int `json:"queued"` // held back by the reported capacity
	Available int `json:"available"`
	Acquired  int `json:"acquired"`
	Assigned  int `json:"assigned"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Canceled  int `json:"canceled"`
}

// SessionState is the live message session of a scale set.
type SessionState struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	CreatedAt time.Time `json:"created_at"`
	// Polls counts the polls in progress, which keep the session from expiring.
	Polls int `json:"polls"`
}

// RunnerCounts counts a scale set's runners.
type RunnerCounts struct {
	Registered int `json:"registered"` // JIT issued, not done or removed
	Online     int `json:"online"`     // idle or busy
	Busy       int `json:"busy"`
}

// MessageCounts describes a scale set's broker queue.
type MessageCounts struct {
	Delivered      int `json:"delivered"`
	Redelivered    int `json:"redelivered"`
	Acked          int `json:"acked"`
	Unacked        int `json:"unacked"`
	PendingEntries int `json:"pending_entries"`
}

// JobState describes one job.
type JobState struct {
	ID              string    `json:"id"`
	Scope           string    `json:"scope"`
	ScaleSetID      int       `json:"scale_set_id"`
	RunnerRequestID int64     `json:"runner_request_id"`
	State           string    `json:"state"`
	Attempts        int       `json:"attempts"`
	RunnerName      string    `json:"runner_name"`
	Labels          []string  `json:"labels"`
	QueuedAt        time.Time `json:"queued_at"`
	AssignedAt      time.Time `json:"assigned_at,omitzero"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	CompletedAt     time.Time `json:"completed_at,omitzero"`
	Result          string    `json:"result,omitempty"`
}

// RunnerState describes one runner ever issued.
type RunnerState struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Scope       string    `json:"scope"`
	ScaleSetID  int       `json:"scale_set_id"`
	State       string    `json:"state"`
	JobID       string    `json:"job_id,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ConnectedAt time.Time `json:"connected_at,omitzero"`
}

// FaultState is a registered fault and how often it hit.
type FaultState struct {
	Fault
	Hits   int  `json:"hits"`
	Active bool `json:"active"`
}

// State returns a snapshot.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireIdleSessions()
	st := State{
		ScaleSets:   []ScaleSetState{},
		ScopeQueued: map[string]int{},
		Calls:       make(map[string]int, len(s.calls)),
		Violations:  slices.Clone(s.violations),
		Jobs:        make([]JobState, 0, len(s.jobOrder)),
		Runners:     make([]RunnerState, 0, len(s.runnerOrder)),
		Faults:      []FaultState{},
	}
	if st.Violations == nil {
		st.Violations = []Violation{}
	}
	for k, v := range s.calls {
		st.Calls[k] = v
	}
	for _, ss := range s.sortedScaleSets() {
		st.ScaleSets = append(st.ScaleSets, s.scaleSetState(ss))
	}
	for _, j := range s.scopeQueue {
		st.ScopeQueued[j.scope]++
	}
	for _, j := range s.jobOrder {
		js := JobState{
			ID: j.id, Scope: j.scope, RunnerRequestID: j.requestID, State: string(j.state),
			Attempts: j.attempts, Labels: slices.Clone(j.labels),
			QueuedAt: j.queueTime, AssignedAt: j.assignTime, StartedAt: j.startTime, CompletedAt: j.finishTime,
			Result: j.result,
		}
		if j.ss != nil {
			js.ScaleSetID = j.ss.id
		}
		if j.runner != nil {
			js.RunnerName = j.runner.name
		}
		st.Jobs = append(st.Jobs, js)
	}
	for _, rn := range s.runnerOrder {
		rs := RunnerState{
			ID: rn.id, Name: rn.name, Scope: rn.scope, ScaleSetID: rn.ss.id, State: string(rn.state),
			CreatedAt: rn.created, ConnectedAt: rn.connectedAt,
		}
		if rn.job != nil {
			rs.JobID = rn.job.id
		}
		st.Runners = append(st.Runners, rs)
	}
	for _, f := range s.faults {
		st.Faults = append(st.Faults, FaultState{Fault: f.Fault, Hits: f.hits, Active: f.active()})
	}
	return st
}

// Lock held.
func (s *Server) scaleSetState(ss *scaleSet) ScaleSetState {
	out := ScaleSetState{
		ID: ss.id, Name: ss.name, Scope: ss.scope, Labels: ss.labelNames(),
		Conflicts:       ss.conflicts,
		SessionsCreated: ss.sessionsCreated,
		Evictions:       ss.evictions,
		MaxCapacity:     ss.broker.maxCapacity,
		PeakAssigned:    ss.peakAssigned,
		Statistics:      s.stats(ss),
		Messages: MessageCounts{
			Delivered:      ss.broker.delivered,
			Redelivered:    ss.broker.redelivered,
			Acked:          ss.broker.acked,
			Unacked:        len(ss.broker.unacked),
			PendingEntries: len(ss.broker.pending),
		},
	}
	if ss.session != nil {
		out.Session = &SessionState{ID: ss.session.id.String(), Owner: ss.session.owner, CreatedAt: ss.session.created, Polls: ss.session.polling}
	}
	for _, j := range ss.jobs {
		if j.ss != ss {
			continue
		}
		switch j.state {
		case jobQueued:
			out.Jobs.Queued++
		case jobAvailable:
			out.Jobs.Available++
		case jobAcquired:
			out.Jobs.Acquired++
		case jobAssigned:
			out.Jobs.Assigned++
		case jobRunning:
			out.Jobs.Running++
		}
	}
	out.Jobs.Completed, out.Jobs.Canceled = ss.completedJobs, ss.canceledJobs
	for _, rn := range ss.runners {
		if rn.registered() {
			out.Runners.Registered++
		}
		if rn.state == runnerIdle || rn.state == runnerBusy {
			out.Runners.Online++
		}
		if rn.state == runnerBusy {
			out.Runners.Busy++
		}
	}
	return out
}
