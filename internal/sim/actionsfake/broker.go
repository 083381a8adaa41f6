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
	pending      []jobEntry
	unacked      []*message
	lastID       int
	delivered    int // messages sent at least once
	redelivered  int // extra sends of unacked messages
	acked        int
	maxCapacity  int  // last X-ScaleSetMaxCapacity seen
	capacitySeen bool // a poll has reported maxCapacity
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

// formMessage turns up to maxEntriesPerMessage pending entries into one
// unacked message; the rest wait for the next message. Lock held.
func (s *Server) formMessage(ss *scaleSet) *message {
	b := &ss.broker
	n := min(len(b.pending), maxEntriesPerMessage)
	body, _ := json.Marshal(b.pending[:n]) // plain structs: cannot fail
	b.lastID++
	m := &message{id: b.lastID, body: string(body), entries: n}
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = nil
	}
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
// session must exist and not be deleted (else 404), and the token must be
// its current one and the session not expired or evicted (else 401). Lock held.
func (s *Server) brokerSession(w http.ResponseWriter, r *http.Request) (*session, bool) {
	ssID, err1 := strconv.Atoi(r.PathValue("id"))
	sid, err2 := uuid.Parse(r.PathValue("sid"))
	sess := s.sessions[sid]
	if err1 != nil || err2 != nil || sess == nil || sess.deleted || sess.ss.id != ssID {
		// A poll the client sent just before it deleted the session (a
		// listener stopping cancels its long poll, then deletes the
		// session) may reach us on its own connection after the DELETE:
		// that is no misuse. One arriving later is.
		if qt, ok := s.queueTokens[authToken(r, "Bearer")]; ok && qt.stale() && s.now().Sub(qt.sess.deletedAt) > inFlightGrace {
			s.violate(ViolationStaleToken, "%s %s: session %s was deleted", r.Method, r.URL.Path, qt.sess.id)
		}
		writeActionsError(w, http.StatusNotFound, exSessionNotFound, "message session not found")
		return nil, false
	}
	qt, ok := s.queueTokenFor(w, r, ssID)
	if !ok {
		return nil, false
	}
	if qt.sess != sess {
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "message queue token belongs to another session")
		return nil, false
	}
	return sess, true
}

// inFlightGrace is how long after a session's deletion a request with its
// token may still arrive without being the client's misuse of it.
const inFlightGrace = time.Second

func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	lastID := 0
	if v := r.URL.Query().Get("lastMessageId"); v != "" {
		var err error
		if lastID, err = strconv.Atoi(v); err != nil {
			writeActionsError(w, http.StatusBadRequest, exArgument, "invalid lastMessageId %q", v)
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
	if n, err := strconv.Atoi(r.Header.Get("X-ScaleSetMaxCapacity")); err == nil && n >= 0 {
		ss.broker.maxCapacity, ss.broker.capacitySeen = n, true
		s.pump(ss) // the capacity may have grown
	}
	if !s.cfg.NoAckThrough {
		s.ackThrough(ss, lastID)
	}
	// A poll in progress keeps the session from expiring; its end restarts the TTL.
	sess.polling++
	status, out := s.awaitMessage(r, sess, hold.C)
	sess.polling--
	sess.lastPoll = s.now()
	s.mu.Unlock()
	switch {
	case status == 0: // the client went away
	case out == nil:
		w.WriteHeader(status)
	default:
		writeJSON(w, status, out)
	}
}

// awaitMessage holds a poll until there is a message for sess or the hold
// ends, and returns the answer: a status and a body (nil for none), or
// status 0 when the request was canceled. Lock held on entry and on
// return; released while waiting.
func (s *Server) awaitMessage(r *http.Request, sess *session, hold <-chan time.Time) (int, any) {
	ss := sess.ss
	woken := false
	for {
		if sess.deleted || ss.deleted {
			return http.StatusNotFound, newActionsError(exSessionNotFound, "message session was deleted")
		}
		// An evicted session gets no message: its hold runs out into a 401.
		if !sess.evicted {
			if len(ss.broker.unacked) > 0 {
				return http.StatusOK, s.deliver(ss, ss.broker.unacked[0])
			}
			if len(ss.broker.pending) > 0 && !woken {
				return http.StatusOK, s.deliver(ss, s.formMessage(ss))
			}
		}
		// Wait for new entries; once woken, give the rest of a burst a moment to join.
		var notify <-chan struct{}
		var coalesce <-chan time.Time
		switch {
		case woken:
			woken = false
			coalesce = time.After(coalesceWindow)
		case !sess.evicted:
			notify = ss.notify.C()
		}
		s.mu.Unlock()
		held := false
		select {
		case <-notify:
			woken = true
		case <-coalesce:
		case <-hold:
			held = true
		case <-s.done:
			held = true
		case <-r.Context().Done():
			s.mu.Lock()
			return 0, nil
		}
		s.mu.Lock()
		if held {
			if sess.evicted && !sess.deleted && !ss.deleted {
				return http.StatusUnauthorized, newActionsError(exUnauthorized, "the message session %s has expired", sess.id)
			}
			return http.StatusAccepted, nil
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
		writeActionsError(w, http.StatusNotFound, exMessageNotFound, "message %q not found", r.PathValue("mid"))
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
