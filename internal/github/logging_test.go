package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// requestIDs lists the runner request IDs of entries.
func requestIDs(entries []*scaleset.JobMessageBase) []int64 {
	var out []int64
	for _, e := range entries {
		out = append(out, e.RunnerRequestID)
	}
	return out
}

// sessionRoundTrip opens a session on scale set id of acme and takes one
// message through it: a poll whose first token is refused (so the session
// is refreshed), the acquisition of its job, its acknowledgement. Any
// failure fails the test.
func sessionRoundTrip(t *testing.T, f *fakeGitHub, p *Provider, id int) *Session {
	t.Helper()
	ctx := testCtx(t)
	sess, err := p.CreateSession(ctx, "acme", id, "host-1")
	if err != nil {
		t.Fatal(err)
	}
	f.queueJobs(t, 1)
	f.fault(t, actionsfake.Fault{Match: "GET /_broker/", Status: http.StatusUnauthorized, Times: 1})
	msg, err := sess.GetMessage(ctx, 0, 2)
	if err != nil || msg == nil {
		t.Fatalf("GetMessage = %v, %v", msg, err)
	}
	if _, err := sess.AcquireJobs(ctx, requestIDs(msg.Available)); err != nil {
		t.Fatal(err)
	}
	if err := sess.DeleteMessage(ctx, msg.ID); err != nil {
		t.Fatal(err)
	}
	return sess
}

// TestNoSecretsInLogs drives every kind of call, including failures and the
// library's own chain, with debug logging on, and checks that no credential
// reaches a log line or an error.
func TestNoSecretsInLogs(t *testing.T) {
	f := newFake(t, func(c *actionsfake.Config) { c.Acquire = true })
	ctx := testCtx(t)
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	app, appLogs := newProvider(t, f)
	pat, patLogs := newProvider(t, f, withPAT)
	id := newScaleSet(t, app, "acme", "shoes-acme")
	for i, p := range []*Provider{app, pat} {
		_, err := p.InstallationID(ctx, "acme")
		note(err)
		sess := sessionRoundTrip(t, f, p, id)
		_, err = p.RunnerVersion(ctx, "acme", "latest")
		note(err)
		_, _, err = p.GetOrCreateScaleSet(ctx, "acme", "", "shoes-acme", []string{"self-hosted", "shoes-acme"})
		note(err)
		_, err = p.GenerateJITConfig(ctx, "acme", id, fmt.Sprintf("myshoes-%d", i), "_work")
		note(err)
		note(sess.Close(ctx))
	}
	if len(errs) != 0 {
		t.Fatalf("calls failed: %v", errs)
	}
	// Failures carry no credential either.
	busy := newScaleSet(t, app, "acme", "shoes-busy")
	if _, err := app.CreateSession(ctx, "acme", busy, "host-1"); err != nil {
		t.Fatal(err)
	}
	_, err := app.CreateSession(ctx, "acme", busy, "host-2")
	note(err)
	f.fault(t, actionsfake.Fault{Match: "GET " + scaleSetsPath + "$", Status: http.StatusBadGateway})
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

	// Every credential sent (app JWTs, installation, registration, admin
	// and queue tokens, the PAT) and every JIT config the fake issued.
	secrets := append([]string{testPAT}, f.srv.Secrets()...)
	for _, a := range f.seenAuth() {
		if _, cred, ok := strings.Cut(a, " "); ok {
			secrets = append(secrets, cred)
		}
	}
	_, key := testkit.SharedKey(t)
	for _, line := range strings.Split(string(key), "\n") {
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
			var buf testkit.SyncBuffer
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
	f, p := newFakeProvider(t, func(c *actionsfake.Config) { c.BOM, c.Acquire = true, true })
	ctx := testCtx(t)

	res, err := p.EnsureScaleSet(ctx, ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: []string{"self-hosted", "shoes-acme"}})
	if err != nil || res.ScaleSet.ID == 0 || !res.Created {
		t.Fatalf("EnsureScaleSet = %+v, %v", res, err)
	}
	id := res.ScaleSet.ID
	sess, err := p.CreateSession(ctx, "acme", id, "host-1")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	f.queueJobs(t, 1)
	msg, err := sess.GetMessage(ctx, 0, 2)
	if err != nil || msg == nil || msg.ID == 0 || len(msg.Available) != 1 {
		t.Fatalf("GetMessage = %+v, %v", msg, err)
	}
	if ids, err := sess.AcquireJobs(ctx, requestIDs(msg.Available)); err != nil || len(ids) != 1 {
		t.Fatalf("AcquireJobs = %v, %v", ids, err)
	}
	if err := sess.DeleteMessage(ctx, msg.ID); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	jit, err := p.GenerateJITConfig(ctx, "acme", id, "myshoes-a", "_work")
	if err != nil || jit.Runner.ID == 0 {
		t.Fatalf("GenerateJITConfig = %+v, %v", jit, err)
	}
	if st, err := p.GetRunnerStatus(ctx, "acme", int64(jit.Runner.ID)); err != nil || st.Name != "myshoes-a" || st.Online() {
		t.Fatalf("GetRunnerStatus = %+v, %v; want myshoes-a, offline", st, err)
	}
	_, err = p.CreateSession(ctx, "acme", id, "host-2")
	var se *StatusError
	if !errors.Is(err, ErrSessionConflict) || !errors.As(err, &se) || se.Message != "The actions runner scaleset shoes-acme already has an active session." || !strings.HasSuffix(strings.Split(se.TypeName, ",")[0], "SessionConflictException") {
		t.Fatalf("conflict error = %v (%+v); want the decoded error body", err, se)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
