// Package httpapi serves the daemon's local HTTP API: health, and the
// read-only state the CLI shows (`runners ls`, `scalesets ls`) while the
// daemon holds the state file.
package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Runners reads runner records: the store.
type Runners interface {
	ListRunners(store.RunnerFilter) ([]store.Runner, error)
	ListHistory(store.HistoryFilter) ([]store.HistoryRecord, error)
}

// ScaleSets reports the live status of the scale sets: the controller.
type ScaleSets interface {
	ScaleSets() ([]controller.ScaleSetStatus, error)
}

// RunnersResponse is the body of GET /api/v1/runners.
type RunnersResponse struct {
	Runners []store.Runner `json:"runners"`
}

// HistoryResponse is the body of GET /api/v1/history.
type HistoryResponse struct {
	History []store.HistoryRecord `json:"history"`
}

// ScaleSetsResponse is the body of GET /api/v1/scalesets.
type ScaleSetsResponse struct {
	ScaleSets []controller.ScaleSetStatus `json:"scalesets"`
}

// New returns the handler of the local API.
func New(runners Runners, sets ScaleSets, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /api/v1/runners", func(w http.ResponseWriter, r *http.Request) {
		f := store.RunnerFilter{Scope: r.URL.Query().Get("scope")}
		if s := r.URL.Query().Get("state"); s != "" {
			f.States = []store.RunnerState{store.RunnerState(s)}
		}
		list, err := runners.ListRunners(f)
		if err != nil {
			log.Error("api: list runners", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, RunnersResponse{Runners: nonNil(list)})
	})
	mux.HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		list, err := runners.ListHistory(store.HistoryFilter{Scope: r.URL.Query().Get("scope"), Limit: limit})
		if err != nil {
			log.Error("api: list history", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, HistoryResponse{History: nonNil(list)})
	})
	mux.HandleFunc("GET /api/v1/scalesets", func(w http.ResponseWriter, _ *http.Request) {
		list, err := sets.ScaleSets()
		if err != nil {
			log.Error("api: list scale sets", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ScaleSetsResponse{ScaleSets: nonNil(list)})
	})
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
