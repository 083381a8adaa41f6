package actionsfake

import (
	"net/http"
)

func (s *Server) handleQueueJobs(w http.ResponseWriter, r *http.Request) {
	var req JobsRequest
	if err := decodeBody(r, &req); err != nil {
		writeActionsError(w, http.StatusBadRequest, "ArgumentException", "%s", err)
		return
	}
	out, err := s.QueueJobs(req)
	if err != nil {
		writeActionsError(w, http.StatusBadRequest, "ArgumentException", "%s", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := decodeBody(r, &f); err != nil {
		writeActionsError(w, http.StatusBadRequest, "ArgumentException", "%s", err)
		return
	}
	if err := s.AddFault(f); err != nil {
		writeActionsError(w, http.StatusBadRequest, "ArgumentException", "%s", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.State())
}
