package reliability

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// Scenarios of the issue "Nothing leaks, nothing wedges" about what the
// daemon lets in: its local API, its secrets, the targets myshoes sends.

// apiCall is one request to the daemon's API, as a browser page or a
// local client would send it.
type apiCall struct {
	method, path string
	host         string // the Host header; "" is the listen address
	origin       string
	token        string // sent as Authorization: Bearer; "" sends none
}

// send sends c to the daemon and returns the status and the error of a
// refused request (from its JSON body).
func (c apiCall) send(t *testing.T, d *daemon) (int, string) {
	t.Helper()
	h := testkit.Headers("Host", c.host, "Origin", c.origin)
	if c.token != "" {
		httpapi.SetToken(h, c.token)
	}
	resp, b := testkit.Fetch(t, c.method, "http://"+d.Addr+c.path, nil, h)
	if resp.StatusCode < 400 {
		return resp.StatusCode, ""
	}
	var e httpapi.ErrorResponse
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s refused with %d but not a JSON error (%s): %s", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return resp.StatusCode, e.Error
}

// tokenFile is where the scenario's daemon writes its API token.
func (s *world) tokenFile() string { return httpapi.TokenFile(s.stateFile) }

// readToken reads the daemon's API token file and checks its mode.
func (s *world) readToken() string {
	s.t.Helper()
	fi, err := os.Stat(s.tokenFile())
	if err != nil {
		s.t.Fatalf("API token file: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		s.t.Errorf("API token file mode %o, want 600", perm)
	}
	tok, err := httpapi.ReadTokenFile(s.tokenFile())
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// idleRunner waits for an idle runner and returns it.
func idleRunner(t *testing.T, d *daemon) store.Runner {
	t.Helper()
	isIdle := func(r store.Runner) bool { return r.State == store.StateIdle }
	rs := d.WaitRecords("an idle runner", 90*time.Second, func(rs []store.Runner) bool { return slices.ContainsFunc(rs, isIdle) })
	return rs[slices.IndexFunc(rs, isIdle)]
}

// TestAPIGuard: the local API refuses a foreign Host on every route (DNS
// rebinding) and a mutating request with an Origin or without the
// per-start token (cross-site POST); the token is in a 0600 file next to
// the state file, `runners rm` reads it from there, and it goes away on a
// clean stop and changes with every start.
func TestAPIGuard(t *testing.T) {
	res := newResult(t, 31, "local API: foreign Host, cross-site POST, token (issue 11)",
		"a foreign Host gets 403 on GET and POST; a POST with an Origin gets 403 and one without the token 401, and removes nothing; "+
			"loopback names, /metrics and runners/scalesets ls work without a token; runners rm works with the daemon's --state-file and fails without it; "+
			"the token file is 0600 while the daemon runs, gone after SIGTERM, new at each start")
	s := newScenario(t, res, scenariotest.SimOptions{})
	s.flags = []string{"--min-runners", "1", "--max-runners", "2"}

	d := s.startRun()
	d.WaitUp()
	// The API answered, so the token file was written before it served.
	token := s.readToken()
	if len(token) != 64 {
		t.Errorf("token of %d characters, want 64 hex", len(token))
	}
	_, port, _ := net.SplitHostPort(d.Addr)
	victim := idleRunner(t, d)
	remove := "/api/v1/runners/" + victim.Name + "/remove?force=true"

	refused := []struct {
		name string
		call apiCall
		want int
	}{
		{"GET healthz under a foreign Host", apiCall{method: "GET", path: "/healthz", host: "evil.example:" + port}, 403},
		{"GET runners under a foreign Host", apiCall{method: "GET", path: "/api/v1/runners", host: "evil.example"}, 403},
		{"GET metrics under a foreign Host", apiCall{method: "GET", path: "/metrics", host: "rebind.evil.example:" + port}, 403},
		{"POST remove under a foreign Host, with the token", apiCall{method: "POST", path: remove, host: "evil.example:" + port, token: token}, 403},
		{"POST remove with a foreign Origin, with the token", apiCall{method: "POST", path: remove, origin: "http://evil.example", token: token}, 403},
		{"POST remove with a foreign Origin, no token", apiCall{method: "POST", path: remove, origin: "http://evil.example"}, 403},
		{"POST remove without the token", apiCall{method: "POST", path: remove}, 401},
		{"POST remove with a wrong token", apiCall{method: "POST", path: remove, token: strings.Repeat("0", 64)}, 401},
	}
	for _, tc := range refused {
		if code, msg := tc.call.send(t, d); code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, msg, tc.want)
		}
	}
	allowed := []apiCall{
		{method: "GET", path: "/healthz", host: "localhost:" + port},
		{method: "GET", path: "/healthz", host: "[::1]:" + port},
		{method: "GET", path: "/healthz", host: "127.0.0.1"},
		{method: "GET", path: "/metrics"},
		{method: "GET", path: "/api/v1/scalesets", origin: "http://evil.example"},
	}
	for _, c := range allowed {
		if code, msg := c.send(t, d); code != http.StatusOK {
			t.Errorf("%s %s (Host %q): %d %q, want 200", c.method, c.path, c.host, code, msg)
		}
	}
	// None of the refused requests touched the runner.
	rs, err := d.Runners()
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(rs, func(r store.Runner) bool { return r.Name == victim.Name }); i < 0 || rs[i].State != store.StateIdle {
		t.Fatalf("runner %s is no longer idle after refused requests: %v", victim.Name, scenario.CountStates(rs))
	}

	// The CLI: ls needs no token; rm reads it next to --state-file.
	env := testkit.ChildEnv()
	if r := runBinary(t, 30*time.Second, env, "runners", "ls", "-o", "json", "--listen", d.Addr); r.Code != 0 || !strings.Contains(r.Stdout, victim.Name) {
		t.Errorf("runners ls against the daemon:\n%s", r)
	}
	if r := runBinary(t, 30*time.Second, env, "scalesets", "ls", "--listen", d.Addr); r.Code != 0 || !strings.Contains(r.Stdout, "org-a") {
		t.Errorf("scalesets ls against the daemon:\n%s", r)
	}
	r := runBinary(t, 30*time.Second, env, "runners", "rm", victim.Name, "--listen", d.Addr, "--state-file", s.dir+"/elsewhere/state.db")
	if r.Code != 1 || !strings.Contains(r.Stderr, "api token") || !strings.Contains(r.Stderr, "--state-file") {
		t.Errorf("runners rm without the daemon's state file: want exit 1 naming the token and --state-file\n%s", r)
	}
	if strings.Contains(r.Stdout+r.Stderr, token) {
		t.Errorf("runners rm printed the token")
	}
	if r := runBinary(t, 30*time.Second, env, "runners", "rm", victim.Name, "--listen", d.Addr, "--state-file", s.stateFile); r.Code != 0 {
		t.Fatalf("runners rm with the daemon's state file:\n%s", r)
	}
	scenariotest.WaitFor(t, "the removed runner in the history", time.Minute, func() (bool, string) {
		d.Alive()
		h, err := d.History()
		if err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(h, func(r store.HistoryRecord) bool {
			return r.Runner.Name == victim.Name && r.Reason == "removed"
		}), fmt.Sprintf("%d history records", len(h))
	})
	if strings.Contains(d.Log(), token) {
		t.Errorf("the daemon logged its API token")
	}
	d.WaitDrained(time.Minute)
	d.Stop()
	if _, err := os.Stat(s.tokenFile()); !os.IsNotExist(err) {
		t.Errorf("API token file after a clean stop: %v, want it removed", err)
	}

	// A new start has a new token; the old one is refused.
	d2 := s.startRun()
	d2.WaitUp()
	token2 := s.readToken()
	if token2 == token {
		t.Errorf("the second start reuses the first start's token")
	}
	if code, msg := (apiCall{method: "POST", path: "/api/v1/runners/myshoes-nope/remove", token: token}).send(t, d2); code != http.StatusUnauthorized {
		t.Errorf("the previous start's token: %d %q, want 401", code, msg)
	}
	if code, msg := (apiCall{method: "POST", path: "/api/v1/runners/myshoes-nope/remove", token: token2}).send(t, d2); code != http.StatusNotFound {
		t.Errorf("this start's token on an unknown runner: %d %q, want 404", code, msg)
	}
	d2.WaitDrained(time.Minute)
	d2.Stop()
	if _, err := os.Stat(s.tokenFile()); !os.IsNotExist(err) {
		t.Errorf("API token file after the second clean stop: %v, want it removed", err)
	}
	iv := s.checkInvariants(scenario.Options{})
	if len(iv.Problems) > 0 {
		t.Errorf("invariants:\n%s", strings.Join(iv.Problems, "\n"))
	}
}

// TestSecretFlagWarning: a private key given as --github-private-key-base64
// (visible in ps) makes the daemon warn at start, naming the flag and the
// variables to use instead, without the key; given through the variable,
// no warning.
func TestSecretFlagWarning(t *testing.T) {
	res := newResult(t, 32, "secret flags on the command line (issue 11)",
		"--github-private-key-base64 as a flag: one warning naming the flag, SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64, GITHUB_PRIVATE_KEY_BASE64 and --github-private-key-path; "+
			"no line of the key in the log; through GITHUB_PRIVATE_KEY_BASE64: no warning")
	s := newScenario(t, res, scenariotest.SimOptions{})
	keyB64 := base64.StdEncoding.EncodeToString(appKey(t))
	const warning = "a secret was given on the command line"

	// The scenario's --github-private-key-path is emptied: the key comes
	// from the flag only.
	d := s.startRun("--github-private-key-path=", "--github-private-key-base64="+keyB64)
	d.WaitUp()
	s.waitListening(d, d.Started, []string{"org-a"}, time.Minute)
	d.Stop()
	logs := d.Log()
	var lines []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, warning) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d warnings about the flag, want 1:\n%s", len(lines), testkit.Tail(logs, 20))
	}
	for _, want := range []string{"level=WARN", "--github-private-key-base64", "SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64", "GITHUB_PRIVATE_KEY_BASE64", "--github-private-key-path"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("warning %q lacks %s", lines[0], want)
		}
	}
	checkNoKey := func(logs string) {
		t.Helper()
		if strings.Contains(logs, keyB64[:32]) || strings.Contains(logs, keyB64[len(keyB64)-32:]) {
			t.Errorf("the log holds the base64 key")
		}
		pemLines := strings.Split(strings.TrimSpace(string(appKey(t))), "\n")
		for _, l := range pemLines[1 : len(pemLines)-1] {
			if strings.Contains(logs, l) {
				t.Fatalf("the log holds a line of the private key")
			}
		}
	}
	checkNoKey(logs)

	// The same key through myshoes's variable: no warning.
	s.pluginEnv = append(s.pluginEnv, "GITHUB_PRIVATE_KEY_BASE64="+keyB64)
	d2 := s.startRun("--github-private-key-path=")
	d2.WaitUp()
	s.waitListening(d2, d2.Started, []string{"org-a"}, time.Minute)
	d2.Stop()
	if strings.Contains(d2.Log(), warning) {
		t.Errorf("warning although the key came from GITHUB_PRIVATE_KEY_BASE64:\n%s", testkit.Tail(d2.Log(), 20))
	}
	checkNoKey(d2.Log())
}

// oversizedTarget is an entry of PUT /myshoes/_sim/targets with the
// status fields the harness's scenario.Target leaves out.
type oversizedTarget struct {
	ID                string `json:"id,omitempty"`
	Scope             string `json:"scope"`
	Status            string `json:"status,omitempty"`
	StatusDescription string `json:"status_description,omitempty"`
}

// TestOversizedTargetFields: myshoes lists a target whose status
// description is megabytes long, one whose scope is, and one whose ID is.
// The daemon serves the first with its description cut to 1 KiB (state
// file, API and `scalesets ls` alike), skips the other two with a bounded
// warning, and its state file stays small.
func TestOversizedTargetFields(t *testing.T) {
	res := newResult(t, 33, "oversized target fields from myshoes (issue 11)",
		"a 3.5 MB status_description (the sim takes at most 4 MiB), a 256 KiB scope and a 100 KiB id: the state file stays < 2 MB, "+
			"scalesets ls -o json (daemon and file) shows the description cut to 1 KiB with a marker, the scope and the id are skipped with warnings of bounded size")
	s := newScenario(t, res, scenariotest.SimOptions{})
	// Three-byte runes: the cut must fall on a rune boundary.
	desc := "myshoes error: " + strings.Repeat("日本語", 3500<<10/9)
	hugeScope := strings.Repeat("o", 256<<10)
	hugeID := strings.Repeat("a", 100<<10)
	s.sim.Do(http.MethodPut, "/myshoes/_sim/targets", []oversizedTarget{
		{Scope: "org-a", Status: myshoes.StatusError, StatusDescription: desc},
		{Scope: hugeScope},
	}, http.StatusOK, nil)

	d := s.startListening([]string{"org-a"})
	var sets []controller.ScaleSetStatus
	scenariotest.WaitFor(t, "org-a's target status in the API", 30*time.Second, func() (bool, string) {
		d.Alive()
		var err error
		sets, err = d.ScaleSets()
		return err == nil && len(sets) == 1 && sets[0].TargetStatus == myshoes.StatusError, fmt.Sprint(len(sets), err)
	})
	checkCutDescription(t, "GET /api/v1/scalesets", desc, sets[0].TargetStatusDescription)

	live := runBinary(t, 30*time.Second, testkit.ChildEnv(), "scalesets", "ls", "-o", "json", "--listen", d.Addr, "--state-file", s.stateFile)
	if live.Code != 0 {
		t.Fatalf("scalesets ls -o json against the daemon:\n%s", live)
	}
	var liveSets []controller.ScaleSetStatus
	if err := json.Unmarshal([]byte(live.Stdout), &liveSets); err != nil || len(liveSets) != 1 {
		t.Fatalf("scalesets ls -o json: %v, %d sets\n%.2000s", err, len(liveSets), live.Stdout)
	}
	checkCutDescription(t, "scalesets ls -o json (daemon)", desc, liveSets[0].TargetStatusDescription)
	if len(live.Stdout) > 64<<10 {
		t.Errorf("scalesets ls -o json printed %d bytes", len(live.Stdout))
	}

	// An oversized ID joins the list: skipped, the others kept. The fake
	// takes UUIDs only as IDs; an oversized one needs a raw list, which
	// its fault injection serves.
	list, err := json.Marshal([]map[string]string{
		{"id": sets[0].TargetID, "scope": "org-a", "status": myshoes.StatusError, "status_description": desc, "resource_type": "nano"},
		{"id": hugeID, "scope": "org-b", "status": myshoes.StatusActive, "resource_type": "nano"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.sim.Do(http.MethodPost, "/myshoes/_sim/myshoes-fault", map[string]any{"body": string(list)}, http.StatusNoContent, nil)
	scenariotest.WaitFor(t, "the warning about the oversized id", 30*time.Second, func() (bool, string) {
		d.Alive()
		return strings.Contains(d.Log(), "skip targets whose id is too long"), ""
	})
	sets, err = d.ScaleSets()
	if err != nil || len(sets) != 1 || sets[0].Scope != "org-a" || !sets[0].Serving {
		t.Errorf("scale sets with the oversized id listed: %d sets, %v; want org-a alone, served", len(sets), err)
	}
	s.sim.MyshoesFault(myshoesfake.Fault{})

	// The state file while the daemon runs, and after it stopped.
	checkStateSize(t, s.stateFile)
	d.WaitDrained(time.Minute)
	d.Stop()
	checkStateSize(t, s.stateFile)
	offline := s.scaleSetsLs()
	if len(offline) != 1 {
		t.Fatalf("scalesets ls -o json from the file: %d sets, want 1", len(offline))
	}
	checkCutDescription(t, "scalesets ls -o json (state file)", desc, offline[0].TargetStatusDescription)

	logs := d.Log()
	if !strings.Contains(logs, "skip target with an invalid scope") {
		t.Errorf("no warning about the oversized scope")
	}
	for _, l := range strings.Split(logs, "\n") {
		if len(l) > 8<<10 {
			t.Errorf("a log line of %d bytes: %.200s...", len(l), l)
		}
	}
	if strings.Contains(logs, hugeScope[:myshoes.MaxFieldBytes+1]) || strings.Contains(logs, hugeID[:myshoes.MaxIDBytes+1]) ||
		strings.Contains(logs, desc[:myshoes.MaxStatusDescriptionBytes+16]) {
		t.Errorf("the log holds an oversized field beyond its bound")
	}
	res.figure("state file with a 3.5 MB status description: %d KiB", testkit.FileSize(t, s.stateFile)>>10)
	iv := s.checkInvariants(scenario.Options{})
	if len(iv.Problems) > 0 {
		t.Errorf("invariants:\n%s", strings.Join(iv.Problems, "\n"))
	}
}

// checkCutDescription checks that got is desc cut to 1 KiB on a rune
// boundary, with the marker.
func checkCutDescription(t *testing.T, where, desc, got string) {
	t.Helper()
	kept, marked := strings.CutSuffix(got, myshoes.TruncatedMarker)
	switch {
	case !marked:
		t.Errorf("%s: description of %d bytes, without the marker %q", where, len(got), myshoes.TruncatedMarker)
	case len(kept) > myshoes.MaxStatusDescriptionBytes || len(kept) < myshoes.MaxStatusDescriptionBytes-utf8.UTFMax:
		t.Errorf("%s: kept %d bytes of the description, want %d or a few less", where, len(kept), myshoes.MaxStatusDescriptionBytes)
	case !strings.HasPrefix(desc, kept) || !utf8.ValidString(got):
		t.Errorf("%s: the description is not the start of myshoes's, cut on a rune boundary: %.60q", where, got)
	}
}

// checkStateSize fails the test if the state file reached 2 MB.
func checkStateSize(t *testing.T, path string) {
	t.Helper()
	if n := testkit.FileSize(t, path); n >= 2<<20 {
		t.Errorf("state file is %d bytes, want < 2 MB", n)
	}
}
