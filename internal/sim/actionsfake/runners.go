package actionsfake

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

type runnerState string

// Runner states, as shown in State and by the wait call.
const (
	runnerOffline runnerState = "offline" // JIT config issued, never connected
	runnerIdle    runnerState = "idle"    // online, no job
	runnerBusy    runnerState = "busy"    // running a job
	runnerDone    runnerState = "done"    // ran its one job; unregistered
	runnerRemoved runnerState = "removed" // deleted through the agents API or with its scale set
)

const defaultWorkFolder = "_work"

type runner struct {
	id          int64
	name        string
	scope       string
	ss          *scaleSet
	token       string
	jitConfig   string
	workFolder  string
	state       runnerState
	job         *job
	created     time.Time
	connectedAt time.Time
	notify      signal
}

// registered reports whether the runner still exists on the service.
func (rn *runner) registered() bool {
	return rn.state == runnerOffline || rn.state == runnerIdle || rn.state == runnerBusy
}

// runnerRefJSON is a runner ("agent") on the wire. Its status is one of
// online, offline and busy; GitHub sends no busy boolean.
type runnerRefJSON struct {
	ID               int64  `json:"id"`
	Name             string `json:"name"`
	RunnerScaleSetID int    `json:"runnerScaleSetId"`
	Status           string `json:"status"`
	Ephemeral        bool   `json:"ephemeral"`
}

// Agent statuses on the wire.
const (
	agentOnline  = "online"
	agentOffline = "offline"
	agentBusy    = "busy"
)

func (rn *runner) refJSON() runnerRefJSON {
	status := agentOffline // registered and never connected, or gone
	switch rn.state {
	case runnerIdle:
		status = agentOnline
	case runnerBusy:
		status = agentBusy
	}
	return runnerRefJSON{ID: rn.id, Name: rn.name, RunnerScaleSetID: rn.ss.id, Status: status, Ephemeral: true}
}

type jitResponseJSON struct {
	Runner           runnerRefJSON `json:"runner"`
	EncodedJITConfig string        `json:"encodedJITConfig"`
}

func (s *Server) handleGenerateJIT(w http.ResponseWriter, r *http.Request, scope string) {
	var body struct {
		Name       string `json:"name"`
		WorkFolder string `json:"workFolder"`
	}
	if err := decodeBody(r, &body); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	if body.Name == "" {
		writeActionsError(w, http.StatusBadRequest, exArgument, "name is required")
		return
	}
	if body.WorkFolder == "" {
		body.WorkFolder = defaultWorkFolder
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return
	}
	if s.runnerByName(scope, body.Name) != nil {
		ss.conflicts++
		writeActionsError(w, http.StatusConflict, exAgentExists,
			"a runner named %q already exists in %s", body.Name, scope)
		return
	}
	s.nextRunnerID++
	rn := &runner{
		id:         s.nextRunnerID,
		name:       body.Name,
		scope:      ss.scope,
		ss:         ss,
		token:      randomHex(32),
		workFolder: body.WorkFolder,
		state:      runnerOffline,
		created:    s.now().UTC(),
	}
	base := s.base(r)
	encoded, err := encodeJITConfig(RunnerSettings{
		AgentID:       rn.id,
		AgentName:     rn.name,
		PoolID:        1,
		PoolName:      ss.name,
		ScaleSetID:    ss.id,
		ServerURL:     base + "/",
		GitHubURL:     base + "/" + ss.scope,
		WorkFolder:    rn.workFolder,
		Ephemeral:     true,
		DisableUpdate: ss.disableUpdate,
	}, rn.token)
	if err != nil {
		writeActionsError(w, http.StatusInternalServerError, exInternal, "%s", err)
		return
	}
	rn.jitConfig = encoded
	s.runners[rn.id] = rn
	s.runnersByToken[rn.token] = rn
	s.runnersByName[runnerKey(rn.scope, rn.name)] = rn
	s.runnerOrder = append(s.runnerOrder, rn)
	ss.runners = append(ss.runners, rn)
	writeJSON(w, http.StatusOK, jitResponseJSON{Runner: rn.refJSON(), EncodedJITConfig: encoded})
}

func runnerKey(scope, name string) string {
	return strings.ToLower(scope) + "\x00" + strings.ToLower(name)
}

// runnerByName finds a registered runner of the scope by name. Lock held.
func (s *Server) runnerByName(scope, name string) *runner {
	return s.runnersByName[runnerKey(scope, name)]
}

// retireRunner unregisters a runner that is done or removed. Lock held.
func (s *Server) retireRunner(rn *runner, state runnerState) {
	rn.state = state
	rn.ss.idle = deleteRunner(rn.ss.idle, rn)
	rn.ss.runners = deleteRunner(rn.ss.runners, rn)
	delete(s.runnersByName, runnerKey(rn.scope, rn.name))
	rn.notify.Broadcast()
}

// agentInScope finds the registered runner {id} of the scope, or writes 404. Lock held.
func (s *Server) agentInScope(w http.ResponseWriter, r *http.Request, scope string) (*runner, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	rn, ok := s.runners[id]
	if err != nil || !ok || !rn.registered() || !sameScope(rn.scope, scope) {
		writeActionsError(w, http.StatusNotFound, exAgentNotFound, "runner %q not found", r.PathValue("id"))
		return nil, false
	}
	return rn, true
}

func (s *Server) handleListAgents(w http.ResponseWriter, r *http.Request, scope string) {
	name := r.URL.Query().Get("agentName")
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runnerRefJSON
	switch {
	case name != "":
		if rn := s.runnerByName(scope, name); rn != nil {
			out = append(out, rn.refJSON())
		}
	default:
		for _, rn := range s.runnerOrder {
			if rn.registered() && sameScope(rn.scope, scope) {
				out = append(out, rn.refJSON())
			}
		}
	}
	writeJSON(w, http.StatusOK, newList(out))
}

func (s *Server) handleGetAgent(w http.ResponseWriter, r *http.Request, scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.agentInScope(w, r, scope)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, rn.refJSON())
}

func (s *Server) handleDeleteAgent(w http.ResponseWriter, r *http.Request, scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.agentInScope(w, r, scope)
	if !ok {
		return
	}
	if rn.state == runnerBusy {
		writeActionsError(w, http.StatusBadRequest, exJobStillRunning,
			"runner %q is running job %s", rn.name, rn.job.id)
		return
	}
	s.retireRunner(rn, runnerRemoved)
	w.WriteHeader(http.StatusNoContent)
}

func deleteRunner(list []*runner, rn *runner) []*runner {
	out := list[:0]
	for _, o := range list {
		if o != rn {
			out = append(out, o)
		}
	}
	return out
}

// runnerStatusJSON is the answer of connect and wait.
type runnerStatusJSON struct {
	State string `json:"state"`
	JobID string `json:"jobId,omitempty"`
}

func (rn *runner) statusJSON() runnerStatusJSON {
	out := runnerStatusJSON{State: string(rn.state)}
	if rn.job != nil {
		out.JobID = rn.job.id
	}
	return out
}

// handleRunnerConnect brings a JIT runner online. It answers {"state":"idle"};
// if a job is waiting the runner turns busy right after (see wait).
func (s *Server) handleRunnerConnect(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AgentID   int64  `json:"agentId"`
		AgentName string `json:"agentName"`
	}
	if err := decodeBody(r, &body); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.runnersByToken[authToken(r, "Bearer")]
	switch {
	case !ok:
		s.violate(ViolationJITMismatch, "connect of runner %d %q with a credentials token the fake never issued", body.AgentID, body.AgentName)
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "unknown runner credentials")
		return
	case rn.id != body.AgentID || rn.name != body.AgentName:
		s.violate(ViolationJITMismatch, "connect as %d %q with the credentials of runner %d %q", body.AgentID, body.AgentName, rn.id, rn.name)
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "credentials do not match agentId/agentName")
		return
	case !rn.registered():
		writeActionsError(w, http.StatusGone, exAgentNotFound, "runner %q is %s", rn.name, rn.state)
		return
	case rn.state != runnerOffline:
		s.violate(ViolationDoubleConnect, "runner %d %q connected twice", rn.id, rn.name)
		writeActionsError(w, http.StatusConflict, exAgentSessionConflict, "runner %q is already connected", rn.name)
		return
	}
	rn.state = runnerIdle
	rn.connectedAt = s.now().UTC()
	rn.ss.idle = append(rn.ss.idle, rn)
	rn.notify.Broadcast()
	writeJSON(w, http.StatusOK, rn.statusJSON())
	s.pair(rn.ss)
}

// handleRunnerWait long-polls until the runner's state differs from the one
// at the start of the call (or from ?since=<state>), or holdMs elapses.
func (s *Server) handleRunnerWait(w http.ResponseWriter, r *http.Request) {
	hold := s.cfg.PollHold
	if v := r.URL.Query().Get("holdMs"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			writeActionsError(w, http.StatusBadRequest, exArgument, "invalid holdMs %q", v)
			return
		}
		hold = time.Duration(ms) * time.Millisecond
	}
	hold = min(hold, maxRunnerWaitHold)
	timer := time.NewTimer(hold)
	defer timer.Stop()

	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	rn, ok := s.runners[id]
	if !ok || rn.token != authToken(r, "Bearer") {
		s.mu.Unlock()
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "unknown runner or credentials")
		return
	}
	since := runnerState(r.URL.Query().Get("since"))
	if since == "" {
		since = rn.state
	}
	for rn.state == since {
		ch := rn.notify.C()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			s.mu.Lock()
			out := rn.statusJSON()
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, out)
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			writeActionsError(w, http.StatusServiceUnavailable, exServiceUnavailable, "the fake is shutting down")
			return
		}
		s.mu.Lock()
	}
	out := rn.statusJSON()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// Secrets returns every JIT config and runner credential token the fake
// has issued, so that tests can check that none of them reaches a log.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, 2*len(s.runnerOrder))
	for _, rn := range s.runnerOrder {
		out = append(out, rn.jitConfig, rn.token)
	}
	return out
}
