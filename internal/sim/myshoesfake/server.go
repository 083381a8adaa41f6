// Package myshoesfake is a fake of the myshoes REST API (PROTOCOLS.md §3)
// with the real JSON shapes, for tests, benchmarks and the demo. Tests
// change its targets and inject faults while it runs, through Go methods or
// through the /_sim routes.
package myshoesfake

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
)

const (
	contentTypeJSON = "application/json;charset=utf-8"
	maxSimBodyBytes = 4 << 20
	defaultResource = "nano"
	tokenLifetime   = time.Hour
)

// Fault changes the answers of the myshoes API routes (/target,
// /target/{id}, /healthz; never /_sim). The zero Fault is no fault.
// Precedence: Down, then Status, then Body, then Null; Truncate cuts
// whichever answer is sent (the real one when it is alone).
type Fault struct {
	// Status answers with this HTTP status and {"error":"injected fault"}.
	Status int `json:"status,omitempty"`
	// Truncate sends only half of the body, with the full Content-Length,
	// and closes the connection.
	Truncate bool `json:"truncate,omitempty"`
	// Null answers a literal null with status 200.
	Null bool `json:"null,omitempty"`
	// Down closes the connection without answering.
	Down bool `json:"down,omitempty"`
	// Body answers this raw body with status 200, as ContentType
	// (default application/json).
	Body        string `json:"body,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Times limits the fault to the next Times requests; 0 keeps it until
	// the next SetFault.
	Times int `json:"times,omitempty"`
}

func (f Fault) active() bool {
	return f.Status != 0 || f.Truncate || f.Null || f.Down || f.Body != ""
}

// Server is the fake myshoes. It is safe for concurrent use.
type Server struct {
	logger *slog.Logger
	mux    *http.ServeMux

	mu        sync.Mutex
	onTargets func([]myshoes.Target) // see OnTargetsChanged
	targets   []myshoes.Target       // insertion order
	fault     Fault
	lastStamp time.Time
	requests  map[string]int // API route pattern -> count
}

// New builds a fake myshoes with no targets. A nil logger discards logs.
func New(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		logger:   logger,
		mux:      http.NewServeMux(),
		requests: make(map[string]int),
	}
	s.mux.HandleFunc("GET /healthz", s.api(s.handleHealth))
	s.mux.HandleFunc("GET /target", s.api(s.handleList))
	s.mux.HandleFunc("GET /target/{id}", s.api(s.handleGet))
	s.mux.HandleFunc("GET /_sim/targets", s.handleSimList)
	s.mux.HandleFunc("PUT /_sim/targets", s.handleSimReplace)
	s.mux.HandleFunc("POST /_sim/myshoes-fault", s.handleSimFault)
	s.mux.HandleFunc("/", http.NotFound) // text/plain 404, like myshoes
	return s
}

// Handler serves the API. It works mounted under a prefix with
// http.StripPrefix; all routes are relative to its root.
func (s *Server) Handler() http.Handler { return s.mux }

// SetTargets replaces the targets. Missing fields are filled: a new UUID for
// ID, "active" for Status, "nano" for ResourceType and strictly increasing
// creation times in slice order (so a later entry is newer).
func (s *Server) SetTargets(targets []myshoes.Target) {
	s.mu.Lock()
	s.targets = s.targets[:0:0]
	for _, t := range targets {
		s.targets = append(s.targets, s.fillLocked(t))
	}
	s.logger.Info("myshoes fake: targets replaced", "count", len(s.targets))
	s.changedUnlock()
}

// AddTarget adds an active target, newer than every other, and returns it.
// An empty resourceType is "nano".
func (s *Server) AddTarget(scope, resourceType string) myshoes.Target {
	s.mu.Lock()
	t := s.fillLocked(myshoes.Target{Scope: scope, ResourceType: resourceType})
	s.targets = append(s.targets, t)
	s.logger.Info("myshoes fake: target added", "id", t.ID, "scope", scope)
	s.changedUnlock()
	return t
}

// OnTargetsChanged sets fn, called with all targets after SetTargets,
// AddTarget and PUT /_sim/targets, outside the fake's lock: the World
// installs the GitHub App for the owners of new targets with it. A later
// call replaces fn; nil removes it.
func (s *Server) OnTargetsChanged(fn func([]myshoes.Target)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onTargets = fn
}

// changedUnlock releases the lock taken by a change of the targets, then
// calls the OnTargetsChanged hook with a copy of them.
func (s *Server) changedUnlock() {
	fn, targets := s.onTargets, slices.Clone(s.targets)
	s.mu.Unlock()
	if fn != nil {
		fn(targets)
	}
}

// RemoveTarget removes a target entirely and reports whether it existed.
func (s *Server) RemoveTarget(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id)
	if i < 0 {
		return false
	}
	s.targets = slices.Delete(s.targets, i, i+1)
	s.logger.Info("myshoes fake: target removed", "id", id)
	return true
}

// SetStatus changes a target's status (e.g. "suspend" to drop it from
// GET /target) and reports whether the target exists.
func (s *Server) SetStatus(id, status, description string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id)
	if i < 0 {
		return false
	}
	s.targets[i].Status = status
	s.targets[i].StatusDescription = description
	s.targets[i].UpdatedAt = s.stampLocked()
	return true
}

// Targets returns all targets, of every status, in insertion order.
func (s *Server) Targets() []myshoes.Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.targets)
}

// SetFault sets the fault; SetFault(Fault{}) clears it.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	s.logger.Info("myshoes fake: fault set", "fault", fmt.Sprintf("%+v", f))
}

// Requests counts the requests served on an API route pattern, e.g.
// "GET /target", faulted ones included.
func (s *Server) Requests(pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[pattern]
}

// fillLocked fills a target's missing fields.
func (s *Server) fillLocked(t myshoes.Target) myshoes.Target {
	if t.ID == "" {
		t.ID = uuid.NewString()
	}
	if t.Status == "" {
		t.Status = myshoes.StatusActive
	}
	if t.ResourceType == "" {
		t.ResourceType = defaultResource
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.stampLocked()
	}
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = t.CreatedAt
	}
	if t.TokenExpiredAt.IsZero() {
		t.TokenExpiredAt = t.CreatedAt.Add(tokenLifetime)
	}
	return t
}

// stampLocked returns the current time, strictly after the last stamp, so
// targets added in a row have a well-defined newest-first order.
func (s *Server) stampLocked() time.Time {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastStamp) {
		now = s.lastStamp.Add(time.Microsecond)
	}
	s.lastStamp = now
	return now
}

func (s *Server) indexLocked(id string) int {
	return slices.IndexFunc(s.targets, func(t myshoes.Target) bool { return t.ID == id })
}

// api wraps an API handler with request counting and fault injection.
func (s *Server) api(h func(http.ResponseWriter, *http.Request) (int, any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.Pattern]++
		f := s.fault
		if f.active() && f.Times > 0 {
			s.fault.Times--
			if s.fault.Times == 0 {
				s.fault = Fault{}
			}
		}
		s.mu.Unlock()

		s.logger.Debug("myshoes fake: request", "method", r.Method, "path", r.URL.Path)
		if !f.active() {
			status, v := h(w, r)
			writeJSON(w, status, v, false)
			return
		}
		switch {
		case f.Down:
			dropConnection(w)
		case f.Status != 0:
			writeJSON(w, f.Status, errorBody{Error: "injected fault"}, f.Truncate)
		case f.Body != "":
			ct := f.ContentType
			if ct == "" {
				ct = contentTypeJSON
			}
			writeRaw(w, http.StatusOK, ct, []byte(f.Body), f.Truncate)
		case f.Null:
			writeJSON(w, http.StatusOK, nil, f.Truncate)
		default: // Truncate alone: the real answer, cut short
			status, v := h(w, r)
			writeJSON(w, status, v, true)
		}
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) handleHealth(http.ResponseWriter, *http.Request) (int, any) {
	return http.StatusOK, map[string]string{"health": "ok"}
}

// handleList answers like myshoes: only targets that can receive jobs,
// newest first (ties: smaller resource type first), null when empty.
func (s *Server) handleList(http.ResponseWriter, *http.Request) (int, any) {
	s.mu.Lock()
	var list []myshoes.Target // stays nil, encoded as null, when empty
	for _, t := range s.targets {
		if myshoes.Listed(t.Status) {
			list = append(list, t)
		}
	}
	s.mu.Unlock()
	slices.SortStableFunc(list, func(a, b myshoes.Target) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return int(a.ResourceTypeValue()) - int(b.ResourceTypeValue())
	})
	return http.StatusOK, list
}

// handleGet answers one target of any status. Like myshoes, a malformed ID
// is 400 and an unknown one is 500, not 404.
func (s *Server) handleGet(_ http.ResponseWriter, r *http.Request) (int, any) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return http.StatusBadRequest, errorBody{Error: "incorrect target id"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.indexLocked(id.String())
	if i < 0 {
		return http.StatusInternalServerError, errorBody{Error: "datastore read error"}
	}
	return http.StatusOK, s.targets[i]
}

func (s *Server) handleSimList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.simTargets(), false)
}

func (s *Server) simTargets() []myshoes.Target {
	ts := s.Targets()
	if ts == nil {
		ts = []myshoes.Target{}
	}
	return ts
}

// simTarget is the body of PUT /_sim/targets entries.
type simTarget struct {
	ID                string `json:"id"`
	Scope             string `json:"scope"`
	ResourceType      string `json:"resource_type"`
	Status            string `json:"status"`
	StatusDescription string `json:"status_description"`
	ProviderURL       string `json:"provider_url"`
}

// handleSimReplace replaces the targets with a JSON array of simTarget.
// Scopes are not checked, so a test can serve garbage; IDs must be UUIDs
// (or absent) and statuses known (or absent).
func (s *Server) handleSimReplace(w http.ResponseWriter, r *http.Request) {
	var in []simTarget
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSimBodyBytes))
	if err := dec.Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "json decode error: " + err.Error()}, false)
		return
	}
	targets := make([]myshoes.Target, 0, len(in))
	seen := make(map[string]bool, len(in))
	for i, st := range in {
		if st.ID != "" {
			id, err := uuid.Parse(st.ID)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("target %d: id %q is not a UUID", i, st.ID)}, false)
				return
			}
			st.ID = id.String()
			if seen[st.ID] {
				writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("target %d: duplicate id %s", i, st.ID)}, false)
				return
			}
			seen[st.ID] = true
		}
		if st.Status != "" && !myshoes.KnownStatus(st.Status) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("target %d: unknown status %q", i, st.Status)}, false)
			return
		}
		targets = append(targets, myshoes.Target{
			ID:                st.ID,
			Scope:             st.Scope,
			ResourceType:      st.ResourceType,
			Status:            st.Status,
			StatusDescription: st.StatusDescription,
			ProviderURL:       st.ProviderURL,
		})
	}
	s.SetTargets(targets)
	writeJSON(w, http.StatusOK, s.simTargets(), false)
}

func (s *Server) handleSimFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSimBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "json decode error: " + err.Error()}, false)
		return
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 999) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("status %d is not an HTTP status", f.Status)}, false)
		return
	}
	if f.Times < 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "times is negative"}, false)
		return
	}
	s.SetFault(f)
	w.WriteHeader(http.StatusNoContent)
}

// writeJSON encodes v like myshoes (json.Encoder, trailing newline).
func writeJSON(w http.ResponseWriter, status int, v any, truncate bool) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode error"}`)
	}
	writeRaw(w, status, contentTypeJSON, append(b, '\n'), truncate)
}

// writeRaw writes body, or with truncate only its first half under the full
// Content-Length; net/http then closes the connection, and the client sees
// an unexpected EOF.
func writeRaw(w http.ResponseWriter, status int, contentType string, body []byte, truncate bool) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if truncate {
		body = body[:len(body)/2]
	}
	_, _ = w.Write(body)
}

// dropConnection closes the client connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot hijack: abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
