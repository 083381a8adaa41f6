package actionsfake

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	defaultGroupID   = 1
	defaultGroupName = "default"
)

type label struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

type scaleSet struct {
	id            int
	name          string
	scope         string
	groupID       int
	labels        []label
	disableUpdate bool
	createdOn     time.Time
	deleted       bool

	session *session
	jobs    []*job    // unfinished jobs of this scale set
	backlog []*job    // queued beyond the reported capacity (FIFO)
	waiting []*job    // assigned, waiting for a runner (FIFO)
	idle    []*runner // online idle runners (FIFO)
	runners []*runner // registered runners (JIT issued, not done or removed)

	completedJobs, canceledJobs int

	// load counts the jobs offered and not finished (available, acquired,
	// assigned, running), which the reported capacity bounds; active the
	// assigned and running ones. See pump and release.
	load, active, peakAssigned int
	sessionsCreated, evictions int

	broker    broker
	notify    signal // new broker entries or session change
	conflicts int
}

// release takes j out of load and active as it leaves an offered state. Lock held.
func (ss *scaleSet) release(j *job) {
	switch j.state {
	case jobAssigned, jobRunning:
		ss.active--
		ss.load--
	case jobAvailable, jobAcquired:
		ss.load--
	}
}

// hasLabels reports whether the scale set carries every wanted label; its
// name counts as a label, as with runs-on: <scale set name>.
func (ss *scaleSet) hasLabels(want []string) bool {
	for _, w := range want {
		found := strings.EqualFold(w, ss.name)
		for _, l := range ss.labels {
			found = found || strings.EqualFold(w, l.Name)
		}
		if !found {
			return false
		}
	}
	return true
}

func (ss *scaleSet) labelNames() []string {
	out := make([]string, 0, len(ss.labels))
	for _, l := range ss.labels {
		out = append(out, l.Name)
	}
	return out
}

type runnerSettingJSON struct {
	DisableUpdate bool `json:"disableUpdate"`
}

// scaleSetJSON is RunnerScaleSet on the wire.
type scaleSetJSON struct {
	ID                 int               `json:"id"`
	Name               string            `json:"name"`
	RunnerGroupID      int               `json:"runnerGroupId"`
	RunnerGroupName    string            `json:"runnerGroupName"`
	Labels             []label           `json:"labels"`
	RunnerSetting      runnerSettingJSON `json:"RunnerSetting"`
	CreatedOn          time.Time         `json:"createdOn"`
	RunnerJitConfigURL string            `json:"runnerJitConfigUrl"`
	Statistics         Statistics        `json:"statistics"`
}

// Lock held.
func (s *Server) scaleSetJSON(r *http.Request, ss *scaleSet) scaleSetJSON {
	return scaleSetJSON{
		ID:                 ss.id,
		Name:               ss.name,
		RunnerGroupID:      ss.groupID,
		RunnerGroupName:    s.runnerGroup(ss.groupID),
		Labels:             slices.Clone(ss.labels),
		RunnerSetting:      runnerSettingJSON{DisableUpdate: ss.disableUpdate},
		CreatedOn:          ss.createdOn,
		RunnerJitConfigURL: s.base(r) + "/_actions/_apis/runtime/runnerscalesets/" + strconv.Itoa(ss.id) + "/generatejitconfig",
		Statistics:         s.stats(ss),
	}
}

// scaleSetInScope finds a live scale set by its path id within scope, or writes 404. Lock held.
func (s *Server) scaleSetInScope(w http.ResponseWriter, r *http.Request, scope string) (*scaleSet, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	ss, ok := s.scaleSets[id]
	if err != nil || !ok || !sameScope(ss.scope, scope) {
		writeActionsError(w, http.StatusNotFound, exScaleSetNotFound,
			"runner scale set %q not found", r.PathValue("id"))
		return nil, false
	}
	return ss, true
}

// sortedScaleSets returns live scale sets ordered by id. Lock held.
func (s *Server) sortedScaleSets() []*scaleSet {
	out := make([]*scaleSet, 0, len(s.scaleSets))
	for _, ss := range s.scaleSets {
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b *scaleSet) int { return a.id - b.id })
	return out
}

type listJSON[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

func newList[T any](v []T) listJSON[T] {
	if v == nil {
		v = []T{}
	}
	return listJSON[T]{Count: len(v), Value: v}
}

type runnerGroupJSON struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	Size      int    `json:"size"`
	IsDefault bool   `json:"isDefaultGroup"`
}

// runnerGroup returns the name of runner group id, the default one or one
// of Config.RunnerGroups; "" for no such group.
func (s *Server) runnerGroup(id int) string {
	switch {
	case id == defaultGroupID:
		return defaultGroupName
	case id > defaultGroupID && id-defaultGroupID <= len(s.cfg.RunnerGroups):
		return s.cfg.RunnerGroups[id-defaultGroupID-1]
	}
	return ""
}

func (s *Server) handleRunnerGroups(w http.ResponseWriter, r *http.Request, scope string) {
	name := r.URL.Query().Get("groupName")
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runnerGroupJSON
	for id := defaultGroupID; s.runnerGroup(id) != ""; id++ {
		if name != "" && !strings.EqualFold(name, s.runnerGroup(id)) {
			continue
		}
		size := 0
		for _, ss := range s.scaleSets {
			if sameScope(ss.scope, scope) && ss.groupID == id {
				size++
			}
		}
		out = append(out, runnerGroupJSON{ID: id, Name: s.runnerGroup(id), Size: size, IsDefault: id == defaultGroupID})
	}
	writeJSON(w, http.StatusOK, newList(out))
}

func (s *Server) handleListScaleSets(w http.ResponseWriter, r *http.Request, scope string) {
	q := r.URL.Query()
	name := q.Get("name")
	groupID := 0
	if g := q.Get("runnerGroupId"); g != "" {
		var err error
		if groupID, err = strconv.Atoi(g); err != nil {
			writeActionsError(w, http.StatusBadRequest, exArgument, "invalid runnerGroupId %q", g)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []scaleSetJSON
	for _, ss := range s.sortedScaleSets() {
		if !sameScope(ss.scope, scope) ||
			(groupID != 0 && ss.groupID != groupID) ||
			(name != "" && !strings.EqualFold(ss.name, name)) {
			continue
		}
		out = append(out, s.scaleSetJSON(r, ss))
	}
	writeJSON(w, http.StatusOK, newList(out))
}

func (s *Server) handleGetScaleSet(w http.ResponseWriter, r *http.Request, scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.scaleSetJSON(r, ss))
}

// Label types GitHub knows.
const (
	labelTypeSystem = "System"
	labelTypeUser   = "User"
)

// normalizeLabels applies the "System" default type (the library sets it
// before sending, too) and checks names and types; it writes a 400 itself.
func normalizeLabels(w http.ResponseWriter, in []label) ([]label, bool) {
	out := make([]label, 0, len(in))
	for _, l := range in {
		switch {
		case l.Name == "":
			writeActionsError(w, http.StatusBadRequest, exArgument, "label names must not be empty")
			return nil, false
		case l.Type == "", strings.EqualFold(l.Type, labelTypeSystem):
			l.Type = labelTypeSystem
		case strings.EqualFold(l.Type, labelTypeUser):
			l.Type = labelTypeUser
		default:
			// GitHub parses the type into an enum and fails on a null one.
			writeActionsError(w, http.StatusBadRequest, exArgumentNull,
				"Value cannot be null. (Parameter 'type'): label %q has type %q, not System or User", l.Name, l.Type)
			return nil, false
		}
		out = append(out, l)
	}
	return out, true
}

// storedLabels is what the scale set named name keeps of the labels sent.
// GHES 3.18-3.20 without the DistributedTask.AllowRunnerScaleSetCustomLabels
// feature flag keep only the name, silently (the actions/scaleset README,
// on GHES labels).
func (s *Server) storedLabels(name string, sent []label) []label {
	if s.cfg.DropCustomLabels {
		return []label{{Type: labelTypeSystem, Name: name}}
	}
	return sent
}

// duplicateName returns the live scale set that already uses name in the
// scope's group, other than except. Lock held.
func (s *Server) duplicateName(scope string, groupID int, name string, except *scaleSet) *scaleSet {
	for _, ss := range s.scaleSets {
		if ss != except && sameScope(ss.scope, scope) && ss.groupID == groupID && strings.EqualFold(ss.name, name) {
			return ss
		}
	}
	return nil
}

func (s *Server) handleCreateScaleSet(w http.ResponseWriter, r *http.Request, scope string) {
	var body scaleSetJSON
	if err := decodeBody(r, &body); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	if body.Name == "" {
		writeActionsError(w, http.StatusBadRequest, exArgument, "name is required")
		return
	}
	if body.RunnerGroupID == 0 {
		body.RunnerGroupID = defaultGroupID
	}
	if s.runnerGroup(body.RunnerGroupID) == "" {
		writeActionsError(w, http.StatusNotFound, exRunnerGroupNotFound, "runner group %d not found", body.RunnerGroupID)
		return
	}
	labels, ok := normalizeLabels(w, body.Labels)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if dup := s.duplicateName(scope, body.RunnerGroupID, body.Name, nil); dup != nil {
		dup.conflicts++
		writeActionsError(w, http.StatusConflict, exScaleSetExists,
			"a runner scale set named %q already exists in runner group %d", body.Name, body.RunnerGroupID)
		return
	}
	s.nextScaleSetID++
	ss := &scaleSet{
		id:            s.nextScaleSetID,
		name:          body.Name,
		scope:         scope,
		groupID:       body.RunnerGroupID,
		labels:        s.storedLabels(body.Name, labels),
		disableUpdate: body.RunnerSetting.DisableUpdate,
		createdOn:     s.now().UTC(),
	}
	s.scaleSets[ss.id] = ss
	s.log.Debug("scale set created", "scope", scope, "scaleset", ss.id, "name", ss.name)
	s.dispatchScopeQueue()
	writeJSON(w, http.StatusOK, s.scaleSetJSON(r, ss))
}

func (s *Server) handleUpdateScaleSet(w http.ResponseWriter, r *http.Request, scope string) {
	var body scaleSetJSON
	if err := decodeBody(r, &body); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	labels, ok := normalizeLabels(w, body.Labels)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return
	}
	groupID := ss.groupID
	if body.RunnerGroupID != 0 {
		groupID = body.RunnerGroupID
	}
	if s.runnerGroup(groupID) == "" {
		writeActionsError(w, http.StatusNotFound, exRunnerGroupNotFound, "runner group %d not found", groupID)
		return
	}
	name := ss.name
	if body.Name != "" {
		name = body.Name
	}
	if dup := s.duplicateName(scope, groupID, name, ss); dup != nil {
		dup.conflicts++
		writeActionsError(w, http.StatusConflict, exScaleSetExists,
			"a runner scale set named %q already exists in runner group %d", name, groupID)
		return
	}
	ss.name, ss.groupID = name, groupID
	if body.Labels != nil || s.cfg.DropCustomLabels {
		ss.labels = s.storedLabels(name, labels)
	}
	ss.disableUpdate = body.RunnerSetting.DisableUpdate
	s.dispatchScopeQueue()
	writeJSON(w, http.StatusOK, s.scaleSetJSON(r, ss))
}

func (s *Server) handleDeleteScaleSet(w http.ResponseWriter, r *http.Request, scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return
	}
	s.deleteScaleSet(ss)
	w.WriteHeader(http.StatusNoContent)
}

// deleteScaleSet ends the session, removes the runners, cancels running jobs
// and sends every other unfinished job back to the scope queue. Lock held.
func (s *Server) deleteScaleSet(ss *scaleSet) {
	delete(s.scaleSets, ss.id)
	ss.deleted = true
	if ss.session != nil {
		// The service ends it, not its client: the listener learns of it
		// only when its calls fail, as with an evicted session.
		s.evictSession(ss.session, "ended with its scale set")
	}
	var requeue []*job
	for _, j := range slices.Clone(ss.jobs) {
		if j.state == jobRunning {
			s.finishJob(j, jobCanceled, resultCanceled)
			continue
		}
		s.stopTimer(j.timer)
		j.timer = nil
		j.ss, j.state = nil, jobQueued
		requeue = append(requeue, j)
	}
	ss.jobs, ss.waiting, ss.backlog = nil, nil, nil
	for _, rn := range slices.Clone(ss.runners) {
		s.retireRunner(rn, runnerRemoved)
	}
	ss.notify.Broadcast()
	for _, j := range requeue {
		s.dispatch(j)
	}
	s.log.Debug("scale set deleted", "scaleset", ss.id, "requeued", len(requeue))
}
