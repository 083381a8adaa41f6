package actionsfake

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

type jobState string

// Job states, as shown in State.
const (
	jobQueued    jobState = "queued"    // waiting at scope level, or about to be offered again
	jobAvailable jobState = "available" // GHES: offered as JobAvailable, not acquired yet
	jobAcquired  jobState = "acquired"  // GHES: acquired (transient: assigned at once)
	jobAssigned  jobState = "assigned"  // assigned to the scale set, no runner yet
	jobRunning   jobState = "running"
	jobCompleted jobState = "completed" // final, result succeeded
	jobCanceled  jobState = "canceled"  // final, result canceled
)

const (
	resultSucceeded = "succeeded"
	resultCanceled  = "canceled"

	maxJobsPerRequest = 10000
)

type job struct {
	id            string
	scope         string
	owner, repo   string
	labels        []string // wanted labels, for matching
	requestLabels []string // as sent in messages
	duration      time.Duration
	requestID     int64
	runID         int64
	displayName   string
	workflowRef   string

	state    jobState
	attempts int
	result   string
	ss       *scaleSet
	runner   *runner
	timer    *time.Timer // assign timeout or run duration

	queueTime, assignTime, startTime, finishTime time.Time
}

// JobsRequest queues simulated workflow jobs.
type JobsRequest struct {
	// Scope is "org", "owner/repo" or "enterprises/e". A repository job is
	// served by a scale set of the repository, else of its organization.
	Scope string `json:"scope"`
	// Count is the number of jobs (1 if 0).
	Count int `json:"count"`
	// DurationMS is how long each job runs once a runner takes it.
	DurationMS int `json:"duration_ms"`
	// Labels select the scale set: the first (by id) of the scope whose
	// labels (its name included) contain them all. None: the scope's first scale set.
	Labels []string `json:"labels"`
	// Repository names the repository of org-scoped jobs (default "sim-repo").
	Repository string `json:"repository,omitempty"`
}

// JobsResult lists the ids of the queued jobs.
type JobsResult struct {
	JobIDs []string `json:"job_ids"`
}

// QueueJobs queues jobs and offers them to a matching scale set, if any.
func (s *Server) QueueJobs(req JobsRequest) (JobsResult, error) {
	if req.Count == 0 {
		req.Count = 1
	}
	scope := strings.Trim(req.Scope, "/")
	parts := strings.Split(scope, "/")
	switch {
	case scope == "" || len(parts) > 2 || slices.Contains(parts, ""):
		return JobsResult{}, fmt.Errorf("queue jobs: invalid scope %q", req.Scope)
	case req.Count < 0 || req.Count > maxJobsPerRequest:
		return JobsResult{}, fmt.Errorf("queue jobs: count %d out of range 1..%d", req.Count, maxJobsPerRequest)
	case req.DurationMS < 0:
		return JobsResult{}, errors.New("queue jobs: duration_ms must not be negative")
	}
	owner, repo := ownerOfScope(scope), req.Repository
	if len(parts) == 2 && !strings.EqualFold(parts[0], "enterprises") {
		repo = parts[1]
	}
	if repo == "" {
		repo = "sim-repo"
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextRunID++
	runID := s.nextRunID
	now := s.now().UTC()
	out := JobsResult{JobIDs: make([]string, 0, req.Count)}
	for i := range req.Count {
		j := &job{
			id:            uuid.NewString(),
			scope:         scope,
			owner:         owner,
			repo:          repo,
			labels:        slices.Clone(req.Labels),
			requestLabels: slices.Clone(req.Labels),
			duration:      time.Duration(req.DurationMS) * time.Millisecond,
			runID:         runID,
			displayName:   "sim job " + strconv.Itoa(i+1),
			workflowRef:   owner + "/" + repo + "/.github/workflows/sim.yml@refs/heads/main",
			state:         jobQueued,
			attempts:      1,
			queueTime:     now,
		}
		s.newRequestID(j)
		s.jobs[j.id] = j
		s.jobOrder = append(s.jobOrder, j)
		out.JobIDs = append(out.JobIDs, j.id)
		s.dispatch(j)
	}
	return out, nil
}

// newRequestID gives j a fresh runnerRequestId. Lock held.
func (s *Server) newRequestID(j *job) {
	s.nextRequestID++
	j.requestID = s.nextRequestID
	s.jobsByRequest[j.requestID] = j
}

// matchScaleSet picks the scale set for j: the first by id in the job's
// scope (then, for a repository, its owner's scope) that has its labels. Lock held.
func (s *Server) matchScaleSet(j *job) *scaleSet {
	scopes := []string{j.scope}
	if owner := ownerOfScope(j.scope); strings.Contains(j.scope, "/") && !strings.HasPrefix(strings.ToLower(j.scope), "enterprises/") {
		scopes = append(scopes, owner)
	}
	sorted := s.sortedScaleSets()
	for _, scope := range scopes {
		for _, ss := range sorted {
			if sameScope(ss.scope, scope) && ss.hasLabels(j.labels) {
				return ss
			}
		}
	}
	return nil
}

// dispatch queues j at its scale set, or parks it at scope level when no
// scale set matches. Lock held.
func (s *Server) dispatch(j *job) {
	ss := s.matchScaleSet(j)
	if ss == nil {
		j.ss, j.state = nil, jobQueued
		s.scopeQueue = append(s.scopeQueue, j)
		return
	}
	if j.ss != ss {
		ss.jobs = append(ss.jobs, j)
		j.ss = ss
	}
	if len(j.requestLabels) == 0 {
		j.requestLabels = []string{ss.name}
	}
	j.state = jobQueued
	ss.backlog = append(ss.backlog, j)
	s.pump(ss)
}

// pump offers the scale set's queued jobs, in order, while it has room.
// GitHub never gives a scale set more jobs than the capacity its listener
// last reported with X-ScaleSetMaxCapacity (none reported yet: no limit).
// In GHES mode offered jobs count too, acquired or not. Lock held.
func (s *Server) pump(ss *scaleSet) {
	if ss.deleted {
		return
	}
	for len(ss.backlog) > 0 && (!ss.broker.capacitySeen || ss.load < ss.broker.maxCapacity) {
		j := ss.backlog[0]
		ss.backlog = ss.backlog[1:]
		ss.load++
		if s.cfg.Acquire {
			j.state = jobAvailable
			s.emit(entryJobAvailable, j)
			s.scheduleReoffer(j)
			continue
		}
		s.assign(j)
	}
}

// scheduleReoffer offers j again after ReofferInterval while it stays
// available: GitHub offers a job nobody acquired again. Lock held.
func (s *Server) scheduleReoffer(j *job) {
	j.timer = s.schedule(s.cfg.ReofferInterval, func() {
		j.timer = nil
		if j.state != jobAvailable || j.ss == nil || j.ss.deleted {
			return
		}
		// Without a session the offer would only pile up in the broker;
		// the next session gets one from reofferAvailable.
		if s.liveSession(j.ss) != nil {
			s.emit(entryJobAvailable, j)
		}
		s.scheduleReoffer(j)
	})
}

// reofferAvailable offers every available job of ss again, for a new
// session, unless an offer of it is still waiting in the broker. Lock held.
func (s *Server) reofferAvailable(ss *scaleSet) {
	waiting := map[int64]bool{}
	for _, e := range ss.broker.pending {
		if e.MessageType == entryJobAvailable {
			waiting[e.RunnerRequestID] = true
		}
	}
	for _, j := range ss.jobs {
		if j.ss == ss && j.state == jobAvailable && !waiting[j.requestID] {
			s.emit(entryJobAvailable, j)
		}
	}
}

// dispatchScopeQueue retries every job parked at scope level. Lock held.
func (s *Server) dispatchScopeQueue() {
	parked := s.scopeQueue
	s.scopeQueue = nil
	for _, j := range parked {
		s.dispatch(j)
	}
}

// assign gives j to its scale set and starts the assign timeout. Lock held.
func (s *Server) assign(j *job) {
	ss := j.ss
	s.stopTimer(j.timer) // GHES mode: the re-offer timer
	j.state = jobAssigned
	j.assignTime = s.now().UTC()
	s.emit(entryJobAssigned, j)
	j.timer = s.schedule(s.cfg.AssignTimeout, func() { s.assignTimedOut(j) })
	ss.waiting = append(ss.waiting, j)
	ss.active++
	ss.peakAssigned = max(ss.peakAssigned, ss.active)
	s.pair(ss)
}

// pair hands waiting jobs to idle runners, both first come first served. Lock held.
func (s *Server) pair(ss *scaleSet) {
	for len(ss.waiting) > 0 && len(ss.idle) > 0 {
		j, rn := ss.waiting[0], ss.idle[0]
		ss.waiting, ss.idle = ss.waiting[1:], ss.idle[1:]
		s.start(j, rn)
	}
}

func (s *Server) start(j *job, rn *runner) {
	s.stopTimer(j.timer)
	j.state, j.runner, j.startTime = jobRunning, rn, s.now().UTC()
	rn.state, rn.job = runnerBusy, j
	rn.notify.Broadcast()
	s.emit(entryJobStarted, j)
	j.timer = s.schedule(j.duration, func() { s.complete(j) })
}

// complete finishes a running job; its ephemeral runner is done. Lock held.
func (s *Server) complete(j *job) {
	if j.state != jobRunning {
		return
	}
	s.finishJob(j, jobCompleted, resultSucceeded)
	s.emit(entryJobCompleted, j)
	s.retireRunner(j.runner, runnerDone)
	s.pump(j.ss) // capacity freed
}

// finishJob makes j final and drops it from its scale set's active jobs. Lock held.
func (s *Server) finishJob(j *job, state jobState, result string) {
	s.stopTimer(j.timer)
	j.timer = nil
	ss := j.ss
	if ss != nil {
		ss.release(j)
	}
	j.state, j.result, j.finishTime = state, result, s.now().UTC()
	if ss == nil {
		return
	}
	ss.jobs = slices.DeleteFunc(ss.jobs, func(o *job) bool { return o == j })
	if state == jobCompleted {
		ss.completedJobs++
	} else {
		ss.canceledJobs++
	}
}

// assignTimedOut cancels a job no runner took, and queues it again while
// attempts remain. Lock held.
func (s *Server) assignTimedOut(j *job) {
	if j.state != jobAssigned {
		return
	}
	ss := j.ss
	j.timer = nil
	ss.waiting = slices.DeleteFunc(ss.waiting, func(o *job) bool { return o == j })
	j.result, j.finishTime = resultCanceled, s.now().UTC()
	s.emit(entryJobCompleted, j)
	if j.attempts >= s.cfg.MaxAssignAttempts {
		s.finishJob(j, jobCanceled, resultCanceled)
		s.log.Debug("job canceled for good", "job", j.id, "attempts", j.attempts)
		s.pump(ss) // capacity freed
		return
	}
	j.attempts++
	ss.release(j)
	j.state, j.result = jobQueued, ""
	j.assignTime, j.startTime, j.finishTime = time.Time{}, time.Time{}, time.Time{}
	s.newRequestID(j)
	s.dispatch(j)
}

type acquireJSON struct {
	Count int     `json:"count"`
	Value []int64 `json:"value"`
}

// handleAcquireJobs assigns available jobs named by runnerRequestId. Auth is
// the message-queue token of the scale set's session.
func (s *Server) handleAcquireJobs(w http.ResponseWriter, r *http.Request) {
	if !s.checkAPIVersion(w, r) {
		return
	}
	var ids []int64
	if err := decodeBody(r, &ids); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "body must be a JSON array of request ids: %s", err)
		return
	}
	ssID, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeActionsError(w, http.StatusNotFound, exScaleSetNotFound, "runner scale set %q not found", r.PathValue("id"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	qt, ok := s.queueTokenFor(w, r, ssID)
	if !ok {
		return
	}
	ss := qt.sess.ss
	out := acquireJSON{Value: []int64{}}
	for _, id := range ids {
		j := s.jobsByRequest[id]
		if j == nil || j.ss != ss {
			s.violate(ViolationAcquireUnknown, "scale set %d: runner request %d is unknown", ss.id, id)
			continue
		}
		if j.requestID != id || j.state != jobAvailable {
			continue // already acquired, or an older attempt
		}
		j.state = jobAcquired
		s.assign(j)
		out.Value = append(out.Value, id)
	}
	out.Count = len(out.Value)
	writeJSON(w, http.StatusOK, out)
}
