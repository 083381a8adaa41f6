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
	deleted bool   // deleted by its client, or with its scale set
	// deletedAt is when it was deleted.
	deletedAt time.Time
	// evicted: expired or evicted by the service, as GitHub does on its
	// own (actions/scaleset#123 sees it about every 50 minutes). Not the
	// client's doing, so using it afterwards is no protocol violation.
	evicted  bool
	created  time.Time
	lastPoll time.Time // end of the last poll, or creation
	polling  int       // polls in progress
}

type queueToken struct {
	sess       *session
	expires    time.Time
	superseded bool
}

// stale reports whether the token was replaced by a refresh or its session
// was deleted, both by the client itself.
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
	sess.deleted, sess.deletedAt = true, s.now()
	if sess.ss.session == sess {
		sess.ss.session = nil
	}
	sess.ss.notify.Broadcast()
}

// evictSession ends a live session on the service's side: the scale set is
// free for a new session, and the old one's calls answer as GitHub's do for
// an expired session (see handleRefreshSession, handleDeleteSession,
// queueTokenFor). Lock held.
func (s *Server) evictSession(sess *session, why string) {
	sess.evicted = true
	if sess.ss.session == sess {
		sess.ss.session = nil
	}
	sess.ss.evictions++
	sess.ss.notify.Broadcast()
	s.log.Debug("session "+why, "scaleset", sess.ss.id, "session", sess.id)
}

// expireIfIdle evicts sess when nobody has polled it for SessionTTL. Expiry
// is evaluated lazily, wherever a session is looked at, so no timer runs
// per session. Lock held.
func (s *Server) expireIfIdle(sess *session) {
	if s.cfg.SessionTTL < 0 || sess.deleted || sess.evicted || sess.polling > 0 {
		return
	}
	if !s.now().Before(sess.lastPoll.Add(s.cfg.SessionTTL)) {
		s.evictSession(sess, "expired")
	}
}

// expireIdleSessions applies expireIfIdle to every live session. Lock held.
func (s *Server) expireIdleSessions() {
	for _, ss := range s.scaleSets {
		if ss.session != nil {
			s.expireIfIdle(ss.session)
		}
	}
}

// liveSession returns the scale set's session, if it has one that has not expired. Lock held.
func (s *Server) liveSession(ss *scaleSet) *session {
	if ss.session != nil {
		s.expireIfIdle(ss.session)
	}
	return ss.session
}

// EvictSessions evicts the live sessions of the given scale sets (of every
// scale set when none is given), as GitHub does on its own, and returns how
// many it evicted. Unknown scale sets and ones without a session are skipped.
func (s *Server) EvictSessions(ids ...int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireIdleSessions()
	n := 0
	evict := func(ss *scaleSet) {
		if ss != nil && ss.session != nil {
			s.evictSession(ss.session, "evicted")
			n++
		}
	}
	if len(ids) == 0 {
		for _, ss := range s.sortedScaleSets() {
			evict(ss)
		}
		return n
	}
	for _, id := range ids {
		evict(s.scaleSets[id])
	}
	return n
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request, scope string) {
	var body struct {
		SessionID string `json:"sessionId"`
		OwnerName string `json:"ownerName"`
	}
	if err := decodeBody(r, &body); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return
	}
	if cur := s.liveSession(ss); cur != nil {
		ss.conflicts++
		// The message GitHub sends, as in actions-runner-controller#4285.
		writeActionsError(w, http.StatusConflict, exSessionConflict,
			"The actions runner scaleset %s already has an active session.", ss.name)
		return
	}
	now := s.now().UTC()
	sess := &session{id: uuid.New(), owner: body.OwnerName, ss: ss, created: now, lastPoll: now}
	s.issueQueueToken(sess)
	s.sessions[sess.id] = sess
	ss.session = sess
	ss.sessionsCreated++
	s.log.Debug("session created", "scaleset", ss.id, "session", sess.id, "owner", sess.owner)
	if s.cfg.Acquire {
		s.reofferAvailable(ss)
	}
	writeJSON(w, http.StatusOK, s.sessionJSON(r, sess))
}

// sessionInPath finds the session {sid} of scale set {id}, deleted or
// evicted ones included, or writes a 404 (a 404 for the scale set itself,
// or notFound for the session). Lock held.
func (s *Server) sessionInPath(w http.ResponseWriter, r *http.Request, scope string, notFound func()) (*session, bool) {
	ss, ok := s.scaleSetInScope(w, r, scope)
	if !ok {
		return nil, false
	}
	sid, err := uuid.Parse(r.PathValue("sid"))
	sess := s.sessions[sid]
	if err != nil || sess == nil || sess.ss != ss {
		notFound()
		return nil, false
	}
	s.expireIfIdle(sess)
	return sess, true
}

func (s *Server) handleRefreshSession(w http.ResponseWriter, r *http.Request, scope string) {
	// GitHub keeps sessions in redis; the refresh of one it no longer has
	// (expired, evicted or deleted) answers 404 RunnerAdminException, quoted
	// in actions/scaleset#123, where the v0.2.0 client dies of it.
	gone := func() {
		writeActionsError(w, http.StatusNotFound, exRunnerAdmin, "runner referenced a session ID that doesn't exist in redis")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessionInPath(w, r, scope, gone)
	if !ok {
		return
	}
	if sess.deleted || sess.evicted {
		gone()
		return
	}
	s.issueQueueToken(sess)
	writeJSON(w, http.StatusOK, s.sessionJSON(r, sess))
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request, scope string) {
	notFound := func() {
		writeActionsError(w, http.StatusNotFound, exSessionNotFound,
			"session %q not found for runner scale set %s", r.PathValue("sid"), r.PathValue("id"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessionInPath(w, r, scope, notFound)
	switch {
	case !ok:
		return
	case sess.evicted:
		// GitHub answers 400, not 404, for an expired or evicted session
		// (actions-runner-controller#4285); clients must treat it as gone.
		writeActionsError(w, http.StatusBadRequest, exSessionExpired, "The session identifier %s is not valid.", sess.id)
		return
	case sess.deleted:
		notFound()
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
	if ok {
		s.expireIfIdle(qt.sess)
	}
	switch {
	case !ok:
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "unknown message queue token")
		return nil, false
	case qt.stale():
		s.violate(ViolationStaleToken, "%s %s: token of session %s (superseded=%t, session deleted=%t)",
			r.Method, r.URL.Path, qt.sess.id, qt.superseded, qt.sess.deleted)
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "message queue token is no longer valid")
		return nil, false
	case qt.sess.evicted:
		// The service ended the session, not the client: no violation.
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "the message session %s has expired", qt.sess.id)
		return nil, false
	case !s.now().Before(qt.expires):
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "message queue token expired")
		return nil, false
	case qt.sess.ss.id != ssID:
		writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "message queue token is not valid for runner scale set %d", ssID)
		return nil, false
	}
	return qt, true
}
