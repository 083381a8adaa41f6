package actionsfake

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Broker message entry types.
const (
	entryJobAvailable = "JobAvailable"
	entryJobAssigned  = "JobAssigned"
	entryJobStarted   = "JobStarted"
	entryJobCompleted = "JobCompleted"

	messageTypeJobMessages = "RunnerScaleSetJobMessages"
)

// jobEntry is one element of a message body.
type jobEntry struct {
	MessageType        string    `json:"messageType"`
	RunnerRequestID    int64     `json:"runnerRequestId"`
	RepositoryName     string    `json:"repositoryName"`
	OwnerName          string    `json:"ownerName"`
	JobID              string    `json:"jobId"`
	JobWorkflowRef     string    `json:"jobWorkflowRef"`
	JobDisplayName     string    `json:"jobDisplayName"`
	WorkflowRunID      int64     `json:"workflowRunId"`
	EventName          string    `json:"eventName"`
	RequestLabels      []string  `json:"requestLabels"`
	QueueTime          time.Time `json:"queueTime"`
	ScaleSetAssignTime time.Time `json:"scaleSetAssignTime"`
	RunnerAssignTime   time.Time `json:"runnerAssignTime"`
	FinishTime         time.Time `json:"finishTime"`
	RunnerID           int64     `json:"runnerId,omitempty"`
	RunnerName         string    `json:"runnerName,omitempty"`
	Result             string    `json:"result,omitempty"`
}

type message struct {
	id         int
	body       string // JSON array of jobEntry, as a string
	entries    int
	deliveries int
}

// broker is the message queue of one scale set. It outlives sessions:
// unacked messages go to the next session too.
type broker struct {
	pending     []jobEntry
	unacked     []*message
	lastID      int
	delivered   int // messages sent at least once
	redelivered int // extra sends of unacked messages
	acked       int
	maxCapacity int // last X-ScaleSetMaxCapacity seen
}

type messageJSON struct {
	MessageID   int        `json:"messageId"`
	MessageType string     `json:"messageType"`
	Body        string     `json:"body"`
	Statistics  Statistics `json:"statistics"`
}

// emit queues an entry about j on its scale set's broker. Lock held.
func (s *Server) emit(typ string, j *job) {
	ss := j.ss
	e := jobEntry{
		MessageType:        typ,
		RunnerRequestID:    j.requestID,
		RepositoryName:     j.repo,
		OwnerName:          j.owner,
		JobID:              j.id,
		JobWorkflowRef:     j.workflowRef,
		JobDisplayName:     j.displayName,
		WorkflowRunID:      j.runID,
		EventName:          "push",
		RequestLabels:      slices.Clone(j.requestLabels),
		QueueTime:          j.queueTime,
		ScaleSetAssignTime: j.assignTime,
		RunnerAssignTime:   j.startTime,
		FinishTime:         j.finishTime,
	}
	if e.RequestLabels == nil {
		e.RequestLabels = []string{}
	}
	if (typ == entryJobStarted || typ == entryJobCompleted) && j.runner != nil {
		e.RunnerID, e.RunnerName = j.runner.id, j.runner.name
	}
	if typ == entryJobCompleted {
		e.Result = j.result
	}
	ss.broker.pending = append(ss.broker.pending, e)
	ss.notify.Broadcast()
}

// formMessage turns the pending entries into one unacked message. Lock held.
func (s *Server) formMessage(ss *scaleSet) *message {
	b := &ss.broker
	body, _ := json.Marshal(b.pending) // plain structs: cannot fail
	b.lastID++
	m := &message{id: b.lastID, body: string(body), entries: len(b.pending)}
	b.pending = nil
	b.unacked = append(b.unacked, m)
	return m
}

// deliver counts a send of m and builds its JSON with fresh statistics. Lock held.
func (s *Server) deliver(ss *scaleSet, m *message) messageJSON {
	m.deliveries++
	if m.deliveries == 1 {
		ss.broker.delivered++
	} else {
		ss.broker.redelivered++
	}
	return messageJSON{MessageID: m.id, MessageType: messageTypeJobMessages, Body: m.body, Statistics: s.stats(ss)}
}

// ackThrough treats every message with id <= lastID as acked. Lock held.
func (s *Server) ackThrough(ss *scaleSet, lastID int) {
	b := &ss.broker
	b.unacked = slices.DeleteFunc(b.unacked, func(m *message) bool {
		if m.id <= lastID {
			b.acked++
			return true
		}
		return false
	})
}

// brokerSession authorizes a broker call on /_broker/{id}/{sid}/...: the
// session must be live (else 404) and the token its current one (else 401). Lock held.
func (s *Server) brokerSession(w http.ResponseWriter, r *http.Request) (*session, bool) {
	ssID, err1 := strconv.Atoi(r.PathValue("id"))
	sid, err2 := uuid.Parse(r.PathValue("sid"))
	sess := s.sessions[sid]
	if err1 != nil || err2 != nil || sess == nil || sess.deleted || sess.ss.id != ssID {
		if qt, ok := s.queueTokens[authToken(r, "Bearer")]; ok && qt.stale() {
			s.violate(ViolationStaleToken, "%s %s: session %s was deleted", r.Method, r.URL.Path, qt.sess.id)
		}
		writeActionsError(w, http.StatusNotFound, "TaskAgentSessionNotFoundException", "message session not found")
		return nil, false
	}
	qt, ok := s.queueTokenFor(w, r, ssID)
	if !ok {
		return nil, false
	}
	if qt.sess != sess {
		writeActionsError(w, http.StatusUnauthorized, "VssUnauthorizedException", "message queue token belongs to another session")
		return nil, false
	}
	return sess, true
}

func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	lastID := 0
	if v := r.URL.Query().Get("lastMessageId"); v != "" {
		var err error
		if lastID, err = strconv.Atoi(v); err != nil {
			writeActionsError(w, http.StatusBadRequest, "ArgumentException", "invalid lastMessageId %q", v)
			return
		}
	}
	hold := time.NewTimer(s.cfg.PollHold)
	defer hold.Stop()

	s.mu.Lock()
	sess, ok := s.brokerSession(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	ss := sess.ss
	if n, err := strconv.Atoi(r.Header.Get("X-ScaleSetMaxCapacity")); err == nil {
		ss.broker.maxCapacity = n
	}
	s.ackThrough(ss, lastID)
	woken := false
	for {
		if len(ss.broker.unacked) > 0 {
			out := s.deliver(ss, ss.broker.unacked[0])
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, out)
			return
		}
		if len(ss.broker.pending) > 0 && !woken {
			out := s.deliver(ss, s.formMessage(ss))
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, out)
			return
		}
		// Wait for new entries; once woken, give the rest of a burst a moment to join.
		var notify <-chan struct{}
		var coalesce <-chan time.Time
		if woken {
			woken = false
			coalesce = time.After(coalesceWindow)
		} else {
			notify = ss.notify.C()
		}
		s.mu.Unlock()
		select {
		case <-notify:
			woken = true
		case <-coalesce:
		case <-hold.C:
			w.WriteHeader(http.StatusAccepted)
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			w.WriteHeader(http.StatusAccepted)
			return
		}
		s.mu.Lock()
		if sess.deleted || ss.deleted {
			s.mu.Unlock()
			writeActionsError(w, http.StatusNotFound, "TaskAgentSessionNotFoundException", "message session was deleted")
			return
		}
	}
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.brokerSession(w, r)
	if !ok {
		return
	}
	b := &sess.ss.broker
	mid, err := strconv.Atoi(r.PathValue("mid"))
	if err != nil || mid <= 0 || mid > b.lastID {
		s.violate(ViolationAckUnknownMessage, "scale set %d: message %q was never sent", sess.ss.id, r.PathValue("mid"))
		writeActionsError(w, http.StatusNotFound, "MessageNotFoundException", "message %q not found", r.PathValue("mid"))
		return
	}
	// An already acked message is acked again without complaint.
	b.unacked = slices.DeleteFunc(b.unacked, func(m *message) bool {
		if m.id == mid {
			b.acked++
			return true
		}
		return false
	})
	w.WriteHeader(http.StatusNoContent)
}
