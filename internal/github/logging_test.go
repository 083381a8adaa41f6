package github

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestNoSecretsInLogs drives every kind of call, including failures and the
// library's own chain, with debug logging on, and checks that no credential
// reaches a log line or an error.
func TestNoSecretsInLogs(t *testing.T) {
	s := newScaleSetFake(t)
	f := s.f
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+queueToken2 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, http.StatusOK, jobMessage(t, 3, []map[string]any{{"messageType": "JobAvailable", "runnerRequestId": 5}}))
	})
	f.route("DELETE", queuePath+"/3", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	f.route("POST", "/tenant/_apis/runtime/runnerscalesets/7/acquirejobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"count": 1, "value": []int64{5}})
	})
	f.route("GET", "/api/v3/orgs/acme/actions/runners/downloads", downloadsHandler(f, f.instToken, f.pat))
	f.route("POST", "/tenant/_apis/runtime/runnerscalesets/8/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusConflict, map[string]string{"message": "session exists"})
	})

	ctx := testCtx(t)
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	app, appLogs := newProvider(t, f)
	pat, patLogs := newProvider(t, f, withPAT(f))
	for _, p := range []*Provider{app, pat} {
		_, err := p.InstallationID(ctx, "acme")
		note(err)
		sess, err := p.CreateSession(ctx, "acme", testScaleSetID, "host-1")
		if err != nil {
			t.Fatal(err)
		}
		msg, err := sess.GetMessage(ctx, 0, 2)
		note(err)
		if msg == nil {
			t.Fatal("no message")
		}
		_, err = sess.AcquireJobs(ctx, []int64{5})
		note(err)
		note(sess.DeleteMessage(ctx, msg.ID))
		_, err = p.RunnerVersion(ctx, "acme", "latest")
		note(err)
		_, _, err = p.GetOrCreateScaleSet(ctx, "acme", "", "shoes-acme", []string{"self-hosted", "shoes-acme"})
		note(err)
		note(sess.Close(ctx))
	}
	if len(errs) != 0 {
		t.Fatalf("calls failed: %v", errs)
	}
	// Failures carry no credential either.
	_, err := app.CreateSession(ctx, "acme", 8, "host-1")
	note(err)
	s.getCode = http.StatusBadGateway
	_, _, err = app.GetOrCreateScaleSet(ctx, "acme", "", "other", nil)
	note(err)
	if len(errs) != 2 {
		t.Fatalf("want 2 failures, got %v", errs)
	}

	logs := appLogs.String() + patLogs.String()
	// The logs are not empty: our own lines and the library's (via the
	// retrying HTTP client and its Info lines lowered to Debug) are there.
	for _, want := range []string{"admin connection established", "message session refreshed", "performing request", "level=DEBUG msg=\"refreshing token\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if strings.Contains(logs, "level=INFO") {
		t.Error("library Info lines were not lowered to Debug")
	}

	secrets := []string{f.instToken, f.regToken, f.adminToken, queueToken1, queueToken2, f.pat}
	for _, a := range f.seenAuth() {
		if _, cred, ok := strings.Cut(a, " "); ok {
			secrets = append(secrets, cred) // includes every app JWT
		}
	}
	for _, line := range strings.Split(string(pemPKCS1(testKey())), "\n") {
		if len(line) >= 40 {
			secrets = append(secrets, line)
		}
	}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a credential (%d chars)", len(secret))
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains a credential", err)
			}
		}
	}
}

func TestQuietHandlerLowersInfo(t *testing.T) {
	tests := []struct {
		level     slog.Level
		wantInfo  string
		wantWarn  bool
		wantDebug bool
	}{
		{slog.LevelInfo, "", true, false},
		{slog.LevelDebug, "level=DEBUG msg=info-line", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var buf syncBuffer
			l := slog.New(quietHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level})}).With("scope", "acme")
			l.Info("info-line")
			l.Warn("warn-line")
			l.Debug("debug-line")
			out := buf.String()
			if tt.wantInfo == "" && strings.Contains(out, "info-line") {
				t.Errorf("info line shown at level %v: %s", tt.level, out)
			}
			if tt.wantInfo != "" && !strings.Contains(out, tt.wantInfo) {
				t.Errorf("want %q in %s", tt.wantInfo, out)
			}
			if strings.Contains(out, "warn-line") != tt.wantWarn || strings.Contains(out, "debug-line") != tt.wantDebug {
				t.Errorf("unexpected output at %v: %s", tt.level, out)
			}
			if !l.Handler().Enabled(context.Background(), slog.LevelWarn) {
				t.Error("warn disabled")
			}
		})
	}
}

// TestBOM: every answer begins with a UTF-8 BOM, as the Actions service's
// may; every body is still decoded: installation lookup and token
// (ghinstallation), registration, scale sets (the library), sessions,
// messages, acquisition, JIT configs, runners, and error bodies.
func TestBOM(t *testing.T) {
	s := newScaleSetFake(t)
	f := s.f
	f.bom = true
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, jobMessage(t, 3, []map[string]any{{"messageType": "JobAvailable", "runnerRequestId": 5}}))
	})
	f.route("DELETE", queuePath+"/3", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	f.route("POST", "/tenant/_apis/runtime/runnerscalesets/7/acquirejobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"count": 1, "value": []int64{5}})
	})
	f.route("POST", "/tenant/_apis/runtime/runnerscalesets/7/generatejitconfig", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"runner": map[string]any{"id": 11, "name": "myshoes-a", "runnerScaleSetId": 7}, "encodedJITConfig": "ZW5jb2RlZA=="})
	})
	f.route("GET", "/tenant/_apis/distributedtask/pools/0/agents/11", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"id": 11, "name": "myshoes-a", "status": "busy"})
	})
	f.route("POST", "/tenant/_apis/runtime/runnerscalesets/8/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusConflict, map[string]string{"typeName": "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException", "message": "held by other-host"})
	})
	p, _ := newProvider(t, f)
	ctx := testCtx(t)

	res, err := p.EnsureScaleSet(ctx, ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: []string{"self-hosted", "shoes-acme"}})
	if err != nil || res.ScaleSet.ID != 77 || !res.Created {
		t.Fatalf("EnsureScaleSet = %+v, %v", res, err)
	}
	sess, err := p.CreateSession(ctx, "acme", testScaleSetID, "host-1")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	msg, err := sess.GetMessage(ctx, 0, 2)
	if err != nil || msg == nil || msg.ID != 3 || len(msg.Available) != 1 {
		t.Fatalf("GetMessage = %+v, %v", msg, err)
	}
	if ids, err := sess.AcquireJobs(ctx, []int64{5}); err != nil || len(ids) != 1 {
		t.Fatalf("AcquireJobs = %v, %v", ids, err)
	}
	if err := sess.DeleteMessage(ctx, 3); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	jit, err := p.GenerateJITConfig(ctx, "acme", testScaleSetID, "myshoes-a", "_work")
	if err != nil || jit.Runner.ID != 11 {
		t.Fatalf("GenerateJITConfig = %+v, %v", jit, err)
	}
	if st, err := p.GetRunnerStatus(ctx, "acme", 11); err != nil || !st.Busy() {
		t.Fatalf("GetRunnerStatus = %+v, %v", st, err)
	}
	_, err = p.CreateSession(ctx, "acme", 8, "host-1")
	var se *StatusError
	if !errors.Is(err, ErrSessionConflict) || !errors.As(err, &se) || se.Message != "held by other-host" || !strings.HasSuffix(se.TypeName, "SessionConflictException") {
		t.Fatalf("conflict error = %v (%+v); want the decoded error body", err, se)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
