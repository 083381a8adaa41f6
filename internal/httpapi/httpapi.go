// Package httpapi serves the daemon's local HTTP API: health and
// readiness, Prometheus metrics, the state the CLI shows (`runners ls`,
// `scalesets ls`) while the daemon holds the state file, and runner
// removal.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// Readiness says whether the daemon is ready and, if not, why: the
// controller.
type Readiness interface {
	Ready() (bool, []controller.NotReady)
}

// Remover removes a runner on request: the controller. A runner that does
// not exist is an error wrapping store.ErrNotFound.
type Remover interface {
	RemoveRunner(ctx context.Context, name string, force bool) error
}

// Deps are what the API serves. A nil dependency leaves its routes out:
// Runners serves /api/v1/runners and /api/v1/history, ScaleSets
// /api/v1/scalesets, Readiness /readyz, Gatherer /metrics and Remover
// POST /api/v1/runners/{name}/remove.
type Deps struct {
	Runners   Runners
	ScaleSets ScaleSets
	Readiness Readiness
	Gatherer  prometheus.Gatherer
	Remover   Remover
}

// ReadyResponse is the body of GET /readyz.
type ReadyResponse struct {
	Status   string                `json:"status"`
	NotReady []controller.NotReady `json:"not_ready,omitempty"`
}

// RemoveResponse is the body of a successful POST
// /api/v1/runners/{name}/remove.
type RemoveResponse struct {
	Runner string `json:"runner"`
	Force  bool   `json:"force"`
	Status string `json:"status"`
}

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	Error string `json:"error"`
}

// New returns the handler of the local API with the default Config and
// log as its logger: Host names of loopback only, and no token, so every
// mutating request is refused. The daemon uses NewHandler.
func New(deps Deps, log *slog.Logger) http.Handler {
	cfg := Config{Logger: log} // nothing to validate
	cfg.defaults()
	return newGuard(cfg, routes(deps, cfg.Logger))
}

// NewHandler returns the handler of the local API. Every request passes
// the checks of cfg first (see Config): its Host must name this API, and a
// mutating request must carry the token and no Origin.
func NewHandler(deps Deps, cfg Config) (http.Handler, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newGuard(cfg, routes(deps, cfg.Logger)), nil
}

// routes returns the API's routes, unguarded.
func routes(deps Deps, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if deps.Readiness != nil {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if ok, why := deps.Readiness.Ready(); !ok {
				writeJSON(w, http.StatusServiceUnavailable, ReadyResponse{Status: "not ready", NotReady: why})
				return
			}
			writeJSON(w, http.StatusOK, ReadyResponse{Status: "ready"})
		})
	}
	if deps.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
		}))
	}
	if deps.Runners != nil {
		runners := deps.Runners
		mux.HandleFunc("GET /api/v1/runners", func(w http.ResponseWriter, r *http.Request) {
			f := store.RunnerFilter{Scope: r.URL.Query().Get("scope")}
			if s := r.URL.Query().Get("state"); s != "" {
				f.States = []store.RunnerState{store.RunnerState(s)}
			}
			list, err := runners.ListRunners(f)
			if err != nil {
				log.Error("api: list runners", "err", err)
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			writeJSON(w, http.StatusOK, RunnersResponse{Runners: nonNil(list)})
		})
		mux.HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, r *http.Request) {
			limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
			list, err := runners.ListHistory(store.HistoryFilter{Scope: r.URL.Query().Get("scope"), Limit: limit})
			if err != nil {
				log.Error("api: list history", "err", err)
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			writeJSON(w, http.StatusOK, HistoryResponse{History: nonNil(list)})
		})
	}
	if deps.ScaleSets != nil {
		mux.HandleFunc("GET /api/v1/scalesets", func(w http.ResponseWriter, _ *http.Request) {
			list, err := deps.ScaleSets.ScaleSets()
			if err != nil {
				log.Error("api: list scale sets", "err", err)
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			writeJSON(w, http.StatusOK, ScaleSetsResponse{ScaleSets: nonNil(list)})
		})
	}
	if deps.Remover != nil {
		mux.HandleFunc("POST /api/v1/runners/{name}/remove", func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			force := false
			if s := r.URL.Query().Get("force"); s != "" {
				var err error
				if force, err = strconv.ParseBool(s); err != nil {
					writeError(w, http.StatusBadRequest, fmt.Errorf("force: %q is not true or false", s))
					return
				}
			}
			err := deps.Remover.RemoveRunner(r.Context(), name, force)
			switch {
			case errors.Is(err, store.ErrNotFound):
				writeError(w, http.StatusNotFound, err)
				return
			case errors.Is(err, controller.ErrServedElsewhere):
				// With replicas: another daemon serves the runner's target.
				writeError(w, http.StatusMisdirectedRequest, err)
				return
			case err != nil:
				log.Error("api: remove runner", "runner", name, "force", force, "err", err)
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			log.Info("api: runner removal requested", "runner", name, "force", force)
			writeJSON(w, http.StatusAccepted, RemoveResponse{Runner: name, Force: force, Status: "removing"})
		})
	}
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, ErrorResponse{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
