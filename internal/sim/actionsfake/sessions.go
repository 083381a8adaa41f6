package actionsfake

import (
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
)

type session struct {
	id      uuid.UUID
	owner   string
	ss      *scaleSet
	token   string // current message-queue token
	deleted bool
	created time.Time
}

type queueToken struct {
	sess       *session
	expires    time.Time
	superseded bool
}

// stale reports whether the token was replaced by a refresh or its session ended.
func (qt *queueToken) stale() bool { return qt.superseded || qt.sess.deleted }

type sessionJSON struct {
	SessionID               uuid.UUID     `json:"sessionId"`
	OwnerName               string        `json:"ownerName"`
	RunnerScaleSet          *scaleSetJSON `json:"runnerScaleSet"`
	MessageQueueURL         string        `json:"messageQueueUrl"`
	MessageQueueAccessToken string        `json:"messageQueueAccessToken"`
	Statistics              Statistics    `json:"statistics"`
}

// Lock held.
func (s *Server) sessionJSON(r *http.Request, sess *session) sessionJSON {
	ssj := s.scaleSetJSON(r, sess.ss)
	return sessionJSON{
		SessionID:               sess.id,
		OwnerName:               sess.owner,
		RunnerScaleSet:          &ssj,
		MessageQueueURL:         s.base(r) + "/_broker/" + strconv.Itoa(sess.ss.id) + "/" + sess.id.String() + "/messages",
		MessageQueueAccessToken: sess.token,
		Statistics:              ssj.Statistics,
	}
}

// issueQueueToken supersedes the session's current token and issues a new one. Lock held.
func (s *Server) issueQueueToken(sess *session) {
	if old, ok := s.queueTokens[sess.token]; ok {
		old.superseded = true
	}
	sess.token = "mq_" + randomHex(24)
	s.queueTokens[sess.token] = &queueToken{sess: sess, expires: s.now().Add(s.cfg.QueueTokenTTL)}
}

// endSession deletes a session; its tokens become stale. Lock held.
func (s *Server) endSession(sess *session) {
	sess.deleted = true
	if sess.ss.session == sess {
		sess.ss.session = nil
	}
	sess.ss.notify.Broadcast()
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request, scope string) {
	var body struct {
		SessionID string `json:"sessionId"`
		OwnerName string `json:"ownerName"`
	}
	if err := decodeBody(r, &body); err != nil {
		writeActionsError(w, http.StatusBadRequest, "ArgumentException", "%s", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return
	}
	if cur := ss.session; cur != nil {
		ss.conflicts++
		writeActionsError(w, http.StatusConflict, "TaskAgentSessionConflictException",
			"the runner scale set %d already has an active session for owner %q", ss.id, cur.owner)
		return
	}
	sess := &session{id: uuid.New(), owner: body.OwnerName, ss: ss, created: s.now().UTC()}
	s.issueQueueToken(sess)
	s.sessions[sess.id] = sess
	ss.session = sess
	s.log.Debug("session created", "scaleset", ss.id, "session", sess.id, "owner", sess.owner)
	writeJSON(w, http.StatusOK, s.sessionJSON(r, sess))
}

// sessionInPath finds the live session {sid} of scale set {id}, or writes 404. Lock held.
func (s *Server) sessionInPath(w http.ResponseWriter, r *http.Request, scope string) (*session, bool) {
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return nil, false
	}
	sid, err := uuid.Parse(r.PathValue("sid"))
	sess := s.sessions[sid]
	if err != nil || sess == nil || sess.deleted || sess.ss != ss {
		writeActionsError(w, http.StatusNotFound, "TaskAgentSessionNotFoundException",
			"session %q not found for runner scale set %d", r.PathValue("sid"), ss.id)
		return nil, false
	}
	return sess, true
}

func (s *Server) handleRefreshSession(w http.ResponseWriter, r *http.Request, scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessionInPath(w, r, scope)
	if !ok {
		return
	}
	s.issueQueueToken(sess)
	writeJSON(w, http.StatusOK, s.sessionJSON(r, sess))
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request, scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessionInPath(w, r, scope)
	if !ok {
		return
	}
	s.endSession(sess)
	s.log.Debug("session deleted", "scaleset", sess.ss.id, "session", sess.id)
	w.WriteHeader(http.StatusNoContent)
}

// queueTokenFor validates a message-queue token for scale set ssID. On
// failure it records a violation when due and writes 401. Lock held.
func (s *Server) queueTokenFor(w http.ResponseWriter, r *http.Request, ssID int) (*queueToken, bool) {
	qt, ok := s.queueTokens[authToken(r, "Bearer")]
	switch {
	case !ok:
		writeActionsError(w, http.StatusUnauthorized, "VssUnauthorizedException", "unknown message queue token")
		return nil, false
	case qt.stale():
		s.violate(ViolationStaleToken, "%s %s: token of session %s (superseded=%t, session deleted=%t)",
			r.Method, r.URL.Path, qt.sess.id, qt.superseded, qt.sess.deleted)
		writeActionsError(w, http.StatusUnauthorized, "VssUnauthorizedException", "message queue token is no longer valid")
		return nil, false
	case !s.now().Before(qt.expires):
		writeActionsError(w, http.StatusUnauthorized, "VssUnauthorizedException", "message queue token expired")
		return nil, false
	case qt.sess.ss.id != ssID:
		writeActionsError(w, http.StatusUnauthorized, "VssUnauthorizedException", "message queue token is not valid for runner scale set %d", ssID)
		return nil, false
	}
	return qt, true
}
