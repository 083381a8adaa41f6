package github

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestGenerateJITConfig(t *testing.T) {
	f := newFake(t)
	p, logs := newProvider(t, f)
	id := newScaleSet(t, p, "acme", "shoes-acme")

	jit, err := p.GenerateJITConfig(testCtx(t), "acme", id, "myshoes-a", "/work")
	if err != nil {
		t.Fatalf("GenerateJITConfig: %v", err)
	}
	runners := f.srv.State().Runners
	if len(runners) != 1 || int64(jit.Runner.ID) != runners[0].ID || jit.Runner.Name != "myshoes-a" ||
		jit.EncodedJITConfig == "" || !slices.Contains(f.srv.Secrets(), jit.EncodedJITConfig) {
		t.Errorf("jit = %+v; the fake has %+v", jit.Runner, runners)
	}
	if _, err := p.GenerateJITConfig(testCtx(t), "acme", id, "myshoes-a", "/work"); err == nil {
		t.Error("second JIT config for the same name: want an error")
	}
	calls := f.requests("POST", scaleSetPath(id, "/generatejitconfig"))
	if len(calls) != 2 {
		t.Errorf("generatejitconfig calls = %d, want 2 (a 409 is not retried)", len(calls))
	}
	var body struct{ Name, WorkFolder string }
	if err := json.Unmarshal(calls[0].body, &body); err != nil || body.Name != "myshoes-a" || body.WorkFolder != "/work" {
		t.Errorf("request body %s: %v", calls[0].body, err)
	}
	if strings.Contains(logs.String(), jit.EncodedJITConfig) {
		t.Error("the JIT config appears in the logs")
	}
}

// TestGetRunnerStatus: the agent object carries status online, offline or
// busy, and no busy boolean. The statuses are local: the actionsfake's
// runners reach them only through a whole job's life.
func TestGetRunnerStatus(t *testing.T) {
	f := newFake(t)
	statuses := map[string]string{"11": "busy", "13": "online", "14": "offline"}
	f.route("GET /_actions/_apis/distributedtask/pools/0/agents/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec := f.answer(r) // the fake checks the admin token; it knows no agent
		status, ok := statuses[r.PathValue("id")]
		if rec.Code != http.StatusNotFound || !ok {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": json.Number(r.PathValue("id")), "name": "myshoes-a", "status": status})
	})
	p, _ := newProvider(t, f)
	for _, tc := range []struct {
		id           int64
		online, busy bool
	}{{11, true, true}, {13, true, false}, {14, false, false}} {
		st, err := p.GetRunnerStatus(testCtx(t), "acme", tc.id)
		if err != nil {
			t.Fatalf("GetRunnerStatus(%d): %v", tc.id, err)
		}
		if st.Online() != tc.online || st.Busy() != tc.busy || st.Name != "myshoes-a" {
			t.Errorf("runner %d: status = %+v: Online %t Busy %t, want %t %t", tc.id, st, st.Online(), st.Busy(), tc.online, tc.busy)
		}
	}
	if _, err := p.GetRunnerStatus(testCtx(t), "acme", 12); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown runner: err = %v, want ErrNotFound", err)
	}
}
