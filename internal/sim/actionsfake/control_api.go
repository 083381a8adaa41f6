package actionsfake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

func (s *Server) handleQueueJobs(w http.ResponseWriter, r *http.Request) {
	var req JobsRequest
	if err := decodeBody(r, &req); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	out, err := s.QueueJobs(req)
	if err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := decodeBody(r, &f); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	if err := s.AddFault(f); err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "%s", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// EvictRequest is the body of POST /_sim/sessions/evict.
type EvictRequest struct {
	// ScaleSetIDs selects the scale sets whose session is evicted; none: every live session.
	ScaleSetIDs []int `json:"scale_set_ids"`
}

// EvictResult is the answer of POST /_sim/sessions/evict.
type EvictResult struct {
	Evicted int `json:"evicted"`
}

func (s *Server) handleEvictSessions(w http.ResponseWriter, r *http.Request) {
	var req EvictRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		writeActionsError(w, http.StatusBadRequest, exArgument, "read body: %s", err)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeActionsError(w, http.StatusBadRequest, exArgument, "decode body: %s", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, EvictResult{Evicted: s.EvictSessions(req.ScaleSetIDs...)})
}

func (s *Server) handleClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.State())
}
