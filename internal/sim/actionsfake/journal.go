package actionsfake

import (
	"net/http"
	"strconv"
	"time"
)

// maxJournal bounds the request journal; the oldest entries are dropped.
const maxJournal = 20000

// Request is one request the fake answered, for tests that check when a
// client called and how it was answered (a retry no sooner than a
// Retry-After, say). Control (/_sim/) requests are not recorded.
type Request struct {
	// Route is the route pattern ("GET /_broker/{id}/{sid}/messages").
	Route  string    `json:"route"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Fault is the match of the fault that answered it, if one did.
	Fault string `json:"fault,omitempty"`
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (fault drops).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// record appends a finished request to the journal.
func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.journal) >= maxJournal {
		s.journal = s.journal[len(s.journal)-maxJournal/2:]
	}
	s.journal = append(s.journal, req)
}

// Requests returns the journal, oldest first, keeping only the entries of
// route when it is not empty.
func (s *Server) Requests(route string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Request{}
	for _, r := range s.journal {
		if route == "" || r.Route == route {
			out = append(out, r)
		}
	}
	return out
}

// handleRequests: GET /_sim/requests[?route=<pattern>][&since=<RFC 3339>].
func (s *Server) handleRequests(w http.ResponseWriter, r *http.Request) {
	reqs := s.Requests(r.URL.Query().Get("route"))
	if v := r.URL.Query().Get("since"); v != "" {
		since, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeActionsError(w, http.StatusBadRequest, exArgument, "since %q: %s", v, strconv.Quote(err.Error()))
			return
		}
		kept := reqs[:0]
		for _, q := range reqs {
			if !q.Start.Before(since) {
				kept = append(kept, q)
			}
		}
		reqs = kept
	}
	writeJSON(w, http.StatusOK, reqs)
}
