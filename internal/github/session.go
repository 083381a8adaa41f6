package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/actions/scaleset"
	"github.com/google/uuid"
)

// The message session API is called directly because scaleset v0.2.0 drops
// JobAvailable messages, has no acquirejobs and cannot delete a session by
// ID (see PROTOCOLS.md "Library gaps").

const (
	scaleSetEndpoint = "_apis/runtime/runnerscalesets"
	apiVersion       = "6.0-preview"

	messageTypeJobMessages = "RunnerScaleSetJobMessages"

	// MessageTypeJobAvailable is the entry type scaleset v0.2.0 drops.
	MessageTypeJobAvailable scaleset.MessageType = "JobAvailable"
)

// Statistics are the scale set statistics sent with a session and with
// every message.
type Statistics = scaleset.RunnerScaleSetStatistic

// Message is one batch from the message queue.
type Message struct {
	ID         int64
	Statistics *Statistics
	// Available holds JobAvailable entries: on GHES the listener must acquire
	// these request IDs with AcquireJobs.
	Available []*scaleset.JobMessageBase
	Assigned  []*scaleset.JobAssigned
	Started   []*scaleset.JobStarted
	Completed []*scaleset.JobCompleted
}

// Session is a message session on one scale set. Its methods are safe for
// concurrent use; the mutex guards the session data only and is never held
// across a network call.
type Session struct {
	p          *Provider
	scope      scopeRef
	scaleSetID int

	mu      sync.Mutex
	session scaleset.RunnerScaleSetSession
}

// CreateSession opens a message session on the scale set, owned by owner.
// A 409 (another session holds the scale set) is ErrSessionConflict.
func (p *Provider) CreateSession(ctx context.Context, scope string, scaleSetID int, owner string) (*Session, error) {
	sc, err := parseScope(scope)
	if err != nil {
		return nil, fmt.Errorf("create message session: %w", err)
	}
	body, err := json.Marshal(struct {
		SessionID string `json:"sessionId"`
		OwnerName string `json:"ownerName"`
	}{uuid.Nil.String(), owner})
	if err != nil {
		return nil, err
	}
	r, err := p.adminRequest(ctx, sc, http.MethodPost, fmt.Sprintf("%s/%d/sessions", scaleSetEndpoint, scaleSetID), body)
	if err != nil {
		return nil, fmt.Errorf("create message session for scale set %d: %w", scaleSetID, err)
	}
	switch r.status {
	case http.StatusOK:
	case http.StatusConflict:
		// The status is the signal; GitHub's typeName is
		// GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException.
		return nil, fmt.Errorf("create message session for scale set %d: %w: %w", scaleSetID, ErrSessionConflict, r.statusError())
	default:
		return nil, fmt.Errorf("create message session for scale set %d: %w", scaleSetID, r.statusError())
	}
	sess, err := decodeSession(r.body)
	if err != nil {
		return nil, fmt.Errorf("create message session for scale set %d: %w", scaleSetID, err)
	}
	p.log.Debug("message session created", "scope", sc.raw, "scaleset", scaleSetID, "session", sess.SessionID.String())
	return &Session{p: p, scope: sc, scaleSetID: scaleSetID, session: sess}, nil
}

// DeleteSession deletes a message session by ID, e.g. one left behind by a
// crash. A session GitHub no longer has is not an error: 404 or 410, or
// the 400 RunnerScaleSetSessionExpiredException GitHub answers for a
// session that expired or was evicted ("The session identifier … is not
// valid", seen in actions-runner-controller#4285).
func (p *Provider) DeleteSession(ctx context.Context, scope string, scaleSetID int, sessionID string) error {
	sc, err := parseScope(scope)
	if err != nil {
		return fmt.Errorf("delete message session: %w", err)
	}
	sid, err := uuid.Parse(sessionID)
	if err != nil {
		return fmt.Errorf("delete message session %q: invalid session ID: %w", sessionID, err)
	}
	r, err := p.adminRequest(ctx, sc, http.MethodDelete, fmt.Sprintf("%s/%d/sessions/%s", scaleSetEndpoint, scaleSetID, sid), nil)
	if err != nil {
		return fmt.Errorf("delete message session %s: %w", sid, err)
	}
	switch {
	case r.status == http.StatusNoContent, r.status == http.StatusOK:
		p.log.Debug("message session deleted", "scope", sc.raw, "scaleset", scaleSetID, "session", sid.String())
		return nil
	case sessionGone(r):
		p.log.Debug("message session already gone", "scope", sc.raw, "scaleset", scaleSetID, "session", sid.String(), "status", r.status)
		return nil
	default:
		return fmt.Errorf("delete message session %s: %w", sid, r.statusError())
	}
}

// sessionExpiredType is the typeName of GitHub's answer to a DELETE of an
// expired or evicted session.
const sessionExpiredType = "RunnerScaleSetSessionExpiredException"

// sessionGone reports whether an answer about a session says GitHub no
// longer has it. The status decides; the type name only tells a 400 about
// an expired session from any other 400.
func sessionGone(r *response) bool {
	switch r.status {
	case http.StatusNotFound, http.StatusGone:
		return true
	case http.StatusBadRequest:
		return strings.Contains(r.statusError().TypeName, sessionExpiredType)
	}
	return false
}

// ID returns the session ID.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session.SessionID.String()
}

// ScaleSetID returns the scale set the session listens on.
func (s *Session) ScaleSetID() int { return s.scaleSetID }

// Statistics returns a copy of the latest statistics: from the session, then
// from each message that carried some. Never nil.
func (s *Session) Statistics() *Statistics {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Statistics{}
	if s.session.Statistics != nil {
		st = *s.session.Statistics
	}
	return &st
}

// Close deletes the session.
func (s *Session) Close(ctx context.Context) error {
	return s.p.DeleteSession(ctx, s.scope.raw, s.scaleSetID, s.ID())
}

// queue returns the current queue URL and token.
func (s *Session) queue() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session.MessageQueueURL, s.session.MessageQueueAccessToken
}

// GetMessage long-polls the message queue for the next message after
// lastMessageID. No message (202) is (nil, nil). An expired queue token (401)
// refreshes the session and polls once more. The poll is never retried
// otherwise: ctx cancels it.
func (s *Session) GetMessage(ctx context.Context, lastMessageID int64, maxCapacity int) (*Message, error) {
	ctx = withScope(ctx, s.scope.raw)
	r, err := s.withQueueToken(ctx, func(queueURL, token string) (*response, error) {
		rq, err := s.pollRequest(queueURL, token, lastMessageID, maxCapacity)
		if err != nil {
			return nil, err
		}
		// Tagged here, not for the whole call: a refresh on the way is
		// an operation of its own.
		return s.p.send(withOperation(ctx, OpGetMessage), s.p.pollc, rq)
	})
	if err != nil {
		return nil, fmt.Errorf("get message: %w", err)
	}
	return s.message(r)
}

// message reads the answer to a long poll: a message, or none. It is kept
// out of GetMessage for the same reason as pollRequest.
func (s *Session) message(r *response) (*Message, error) {
	switch {
	case r.status == http.StatusAccepted:
		return nil, nil
	case r.status == http.StatusOK:
	case r.status == http.StatusNotFound:
		return nil, fmt.Errorf("get message: %w: %w", ErrSessionGone, queueStatusError(r))
	default:
		return nil, fmt.Errorf("get message: %w", queueStatusError(r))
	}
	// GitHub sometimes answers 200 with an empty body: no message
	// (actions-runner-controller#4285).
	if len(bytes.TrimSpace(r.body)) == 0 {
		return nil, nil
	}
	msg, err := parseMessage(r.body)
	if err != nil {
		return nil, fmt.Errorf("get message: %w", err)
	}
	if msg.Statistics != nil {
		st := *msg.Statistics
		s.mu.Lock()
		s.session.Statistics = &st
		s.mu.Unlock()
	}
	return msg, nil
}

// pollRequest is the long poll of the queue at queueURL, which is GitHub's
// to choose. It is built apart from GetMessage's call to send, whose frames
// the poll's goroutine keeps while it waits (see scaleSet.poll in
// internal/controller).
func (s *Session) pollRequest(queueURL, token string, lastMessageID int64, maxCapacity int) (*request, error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return nil, fmt.Errorf("parse message queue url: %w", err)
	}
	if lastMessageID > 0 {
		q := u.Query()
		q.Set("lastMessageId", strconv.FormatInt(lastMessageID, 10))
		u.RawQuery = q.Encode()
	}
	return &request{
		method: http.MethodGet,
		url:    u.String(),
		header: http.Header{
			"Accept":                           {"application/json; api-version=" + apiVersion},
			"Authorization":                    {"Bearer " + token},
			scaleset.HeaderScaleSetMaxCapacity: {strconv.Itoa(maxCapacity)},
		},
		timeout: s.p.cfg.PollTimeout, // see request.timeout
	}, nil
}

// DeleteMessage acknowledges a message so it is not delivered again. An
// expired queue token (401) refreshes the session and tries once more; a 404
// is ErrNotFound.
func (s *Session) DeleteMessage(ctx context.Context, messageID int64) error {
	ctx = withScope(ctx, s.scope.raw)
	r, err := s.withQueueToken(ctx, func(queueURL, token string) (*response, error) {
		u, err := url.Parse(queueURL)
		if err != nil {
			return nil, fmt.Errorf("parse message queue url: %w", err)
		}
		u = u.JoinPath(strconv.FormatInt(messageID, 10))
		return s.p.send(withOperation(ctx, OpAcknowledge), s.p.httpc, &request{
			method: http.MethodDelete,
			url:    u.String(),
			header: http.Header{
				"Authorization": {"Bearer " + token},
				"Content-Type":  {"application/json"},
			},
			retry: true,
		})
	})
	if err != nil {
		return fmt.Errorf("delete message %d: %w", messageID, err)
	}
	if r.status != http.StatusNoContent && r.status != http.StatusOK {
		return fmt.Errorf("delete message %d: %w", messageID, queueStatusError(r))
	}
	return nil
}

// AcquireJobs asks for the jobs behind requestIDs (JobAvailable entries) and
// returns the IDs the service granted. It authenticates with the message
// queue token, not the admin token.
func (s *Session) AcquireJobs(ctx context.Context, requestIDs []int64) ([]int64, error) {
	if len(requestIDs) == 0 {
		return nil, nil
	}
	ctx = withScope(ctx, s.scope.raw)
	body, err := json.Marshal(requestIDs)
	if err != nil {
		return nil, err
	}
	r, err := s.withQueueToken(ctx, func(_, token string) (*response, error) {
		conn, err := s.p.adminConn(ctx, s.scope)
		if err != nil {
			return nil, err
		}
		u, err := serviceURL(conn.url, fmt.Sprintf("%s/%d/acquirejobs", scaleSetEndpoint, s.scaleSetID))
		if err != nil {
			return nil, err
		}
		return s.p.send(ctx, s.p.httpc, &request{
			method: http.MethodPost,
			url:    u,
			body:   body,
			header: http.Header{"Authorization": {"Bearer " + token}},
			retry:  true,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("acquire jobs: %w", err)
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("acquire jobs: %w", queueStatusError(r))
	}
	var ans struct {
		Count int     `json:"count"`
		Value []int64 `json:"value"`
	}
	if err := json.Unmarshal(r.body, &ans); err != nil {
		return nil, fmt.Errorf("acquire jobs: decode answer: %w", err)
	}
	return ans.Value, nil
}

// withQueueToken runs call with the current queue URL and token; on 401 it
// refreshes the session (unless another call already did) and runs it once
// more.
func (s *Session) withQueueToken(ctx context.Context, call func(queueURL, token string) (*response, error)) (*response, error) {
	queueURL, token := s.queue()
	r, err := call(queueURL, token)
	if err != nil || r.status != http.StatusUnauthorized {
		return r, err
	}
	if err := s.refresh(ctx, token); err != nil {
		return nil, err
	}
	queueURL, token = s.queue()
	return call(queueURL, token)
}

// refresh renews the session (PATCH .../sessions/{id}) unless its token has
// already changed from stale.
func (s *Session) refresh(ctx context.Context, stale string) error {
	s.mu.Lock()
	current, sid := s.session.MessageQueueAccessToken, s.session.SessionID
	s.mu.Unlock()
	if current != stale {
		return nil
	}
	r, err := s.p.adminRequest(ctx, s.scope, http.MethodPatch, fmt.Sprintf("%s/%d/sessions/%s", scaleSetEndpoint, s.scaleSetID, sid), nil)
	if err != nil {
		return fmt.Errorf("refresh message session %s: %w", sid, err)
	}
	if sessionGone(r) {
		// An evicted session's refresh answers 404 RunnerAdminException
		// ("doesn't exist"): only a new session helps (actions/scaleset#123).
		return fmt.Errorf("refresh message session %s: %w: %w", sid, ErrSessionGone, r.statusError())
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("refresh message session %s: %w", sid, r.statusError())
	}
	sess, err := decodeSession(r.body)
	if err != nil {
		return fmt.Errorf("refresh message session %s: %w", sid, err)
	}
	s.mu.Lock()
	if sess.Statistics == nil {
		sess.Statistics = s.session.Statistics
	}
	s.session = sess
	s.mu.Unlock()
	s.p.log.Debug("message session refreshed", "scope", s.scope.raw, "scaleset", s.scaleSetID, "session", sess.SessionID.String())
	return nil
}

// queueStatusError maps an unexpected queue answer; a 401 that survived a
// refresh is ErrUnauthorized (through StatusError.Is).
func queueStatusError(r *response) error { return r.statusError() }

func decodeSession(body []byte) (scaleset.RunnerScaleSetSession, error) {
	var sess scaleset.RunnerScaleSetSession
	if err := json.Unmarshal(body, &sess); err != nil {
		return sess, fmt.Errorf("decode session: %w", err)
	}
	if sess.SessionID == uuid.Nil {
		return sess, errors.New("decode session: missing sessionId")
	}
	if sess.MessageQueueURL == "" || sess.MessageQueueAccessToken == "" {
		return sess, errors.New("decode session: missing message queue url or token")
	}
	if _, err := url.Parse(sess.MessageQueueURL); err != nil {
		return sess, fmt.Errorf("decode session: message queue url: %w", err)
	}
	return sess, nil
}

// parseMessage decodes a RunnerScaleSetJobMessages answer. Its body is a JSON
// string that holds an array of entries; entries of unknown types are skipped.
func parseMessage(data []byte) (*Message, error) {
	var raw struct {
		MessageID   int64       `json:"messageId"`
		MessageType string      `json:"messageType"`
		Body        string      `json:"body"`
		Statistics  *Statistics `json:"statistics"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	if raw.MessageType != messageTypeJobMessages {
		return nil, &UnsupportedMessageError{MessageID: raw.MessageID, MessageType: raw.MessageType}
	}
	msg := &Message{ID: raw.MessageID, Statistics: raw.Statistics}
	if raw.Body == "" {
		return msg, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal([]byte(raw.Body), &entries); err != nil {
		return nil, fmt.Errorf("decode message %d body: %w", raw.MessageID, err)
	}
	for i, entry := range entries {
		var kind scaleset.JobMessageType
		if err := json.Unmarshal(entry, &kind); err != nil {
			return nil, fmt.Errorf("decode message %d entry %d: %w", raw.MessageID, i, err)
		}
		var err error
		switch kind.MessageType {
		case MessageTypeJobAvailable:
			v := new(scaleset.JobMessageBase)
			if err = json.Unmarshal(entry, v); err == nil {
				msg.Available = append(msg.Available, v)
			}
		case scaleset.MessageTypeJobAssigned:
			v := new(scaleset.JobAssigned)
			if err = json.Unmarshal(entry, v); err == nil {
				msg.Assigned = append(msg.Assigned, v)
			}
		case scaleset.MessageTypeJobStarted:
			v := new(scaleset.JobStarted)
			if err = json.Unmarshal(entry, v); err == nil {
				msg.Started = append(msg.Started, v)
			}
		case scaleset.MessageTypeJobCompleted:
			v := new(scaleset.JobCompleted)
			if err = json.Unmarshal(entry, v); err == nil {
				msg.Completed = append(msg.Completed, v)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("decode message %d %s entry: %w", raw.MessageID, kind.MessageType, err)
		}
	}
	return msg, nil
}

// adminRequest calls the Actions service with the admin token. A 401 drops
// the cached admin connection and tries once more with a fresh one.
func (p *Provider) adminRequest(ctx context.Context, sc scopeRef, method, path string, body []byte) (*response, error) {
	ctx = withScope(ctx, sc.raw)
	for attempt := 0; ; attempt++ {
		conn, err := p.adminConn(ctx, sc)
		if err != nil {
			return nil, err
		}
		u, err := serviceURL(conn.url, path)
		if err != nil {
			return nil, err
		}
		r, err := p.send(ctx, p.httpc, &request{
			method: method,
			url:    u,
			body:   body,
			header: http.Header{"Authorization": {"Bearer " + conn.token}},
			retry:  true,
		})
		if err != nil {
			return nil, err
		}
		if r.status == http.StatusUnauthorized && attempt == 0 {
			p.dropAdminConn(sc, conn.token)
			continue
		}
		return r, nil
	}
}

// serviceURL joins an Actions service path onto the admin base URL and adds
// the api-version, as the library does.
func serviceURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse actions service url: %w", err)
	}
	u = u.JoinPath(path)
	q := u.Query()
	q.Set("api-version", apiVersion)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
