package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestGenerateJITConfig(t *testing.T) {
	f := newFake(t)
	f.installChain()
	const path = "/tenant/_apis/runtime/runnerscalesets/7/generatejitconfig"
	var mu sync.Mutex
	names := map[string]bool{}
	f.route("POST", path, func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		var body struct{ Name, WorkFolder string }
		if err := json.Unmarshal(readBody(t, r), &body); err != nil || body.WorkFolder != "/work" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"typeName": "ArgumentException", "message": "bad body"})
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if names[body.Name] {
			writeJSON(w, http.StatusConflict, map[string]string{"typeName": "AgentExistsException", "message": "exists"})
			return
		}
		names[body.Name] = true
		writeJSON(w, http.StatusOK, map[string]any{
			"runner":           map[string]any{"id": 11, "name": body.Name, "runnerScaleSetId": 7},
			"encodedJITConfig": "ZW5jb2RlZA==",
		})
	})
	p, logs := newProvider(t, f)

	jit, err := p.GenerateJITConfig(testCtx(t), "acme", testScaleSetID, "myshoes-a", "/work")
	if err != nil {
		t.Fatalf("GenerateJITConfig: %v", err)
	}
	if jit.Runner.ID != 11 || jit.Runner.Name != "myshoes-a" || jit.EncodedJITConfig != "ZW5jb2RlZA==" {
		t.Errorf("jit = %+v %+v", jit.Runner, jit)
	}
	if _, err := p.GenerateJITConfig(testCtx(t), "acme", testScaleSetID, "myshoes-a", "/work"); err == nil {
		t.Error("second JIT config for the same name: want an error")
	}
	if n := f.count("POST", path); n != 2 {
		t.Errorf("generatejitconfig calls = %d, want 2 (a 409 is not retried)", n)
	}
	if strings.Contains(logs.String(), "ZW5jb2RlZA==") {
		t.Error("the JIT config appears in the logs")
	}
}

func TestGetRunnerStatus(t *testing.T) {
	f := newFake(t)
	f.installChain()
	// The real agent object carries status online, offline or busy, and no
	// busy boolean.
	for id, status := range map[int]string{11: "busy", 13: "online", 14: "offline"} {
		f.route("GET", fmt.Sprintf("/tenant/_apis/distributedtask/pools/0/agents/%d", id), func(w http.ResponseWriter, r *http.Request) {
			if f.checkAdmin(w, r) {
				writeJSON(w, http.StatusOK, map[string]any{"id": id, "name": "myshoes-a", "status": status})
			}
		})
	}
	f.route("GET", "/tenant/_apis/distributedtask/pools/0/agents/12", func(w http.ResponseWriter, r *http.Request) {
		if f.checkAdmin(w, r) {
			writeJSON(w, http.StatusNotFound, map[string]string{"typeName": "GitHub.DistributedTask.WebApi.AgentNotFoundException", "message": "no"})
		}
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
