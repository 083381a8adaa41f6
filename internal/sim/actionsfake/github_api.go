package actionsfake

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

type installation struct {
	id      int64
	owner   string
	created time.Time
}

type installationToken struct {
	installationID int64
	owner          string
	expires        time.Time
}

type registrationToken struct {
	scope   string
	expires time.Time
}

// ownerOfScope returns the account that owns a scope: "org" -> org,
// "owner/repo" -> owner, "enterprises/e" -> e.
func ownerOfScope(scope string) string {
	first, rest, _ := strings.Cut(scope, "/")
	if strings.EqualFold(first, "enterprises") && rest != "" {
		return rest
	}
	return first
}

// scopeFromConfigURL turns "http://host/org/repo" into "org/repo".
func scopeFromConfigURL(raw string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", false
	}
	scope := strings.Trim(u.Path, "/")
	parts := strings.Split(scope, "/")
	if scope == "" || len(parts) > 2 {
		return "", false
	}
	return scope, true
}

func sameScope(a, b string) bool { return strings.EqualFold(a, b) }

// installationFor returns the owner's installation, creating it on first
// sight, or false when the app is not installed there. Lock held.
func (s *Server) installationFor(owner string) (*installation, bool) {
	key := strings.ToLower(owner)
	if owner == "" || s.uninstalled[key] {
		return nil, false
	}
	if in, ok := s.installations[key]; ok {
		return in, true
	}
	s.nextInstallationID++
	in := &installation{id: s.nextInstallationID, owner: owner, created: s.now()}
	s.installations[key] = in
	s.installationsByID[in.id] = in
	return in, true
}

// Install installs the app for owners, except those in Config.Uninstalled,
// so that GET /app/installations lists them. Installing again is harmless.
func (s *Server) Install(owners ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range owners {
		s.installationFor(o)
	}
}

// InstallationID returns the stable installation ID of owner (creating it),
// or false when the app is not installed for owner.
func (s *Server) InstallationID(owner string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.installationFor(owner)
	if !ok {
		return 0, false
	}
	return in.id, true
}

type installationJSON struct {
	ID                  int64       `json:"id"`
	Account             accountJSON `json:"account"`
	AppID               int64       `json:"app_id"`
	TargetType          string      `json:"target_type"`
	RepositorySelection string      `json:"repository_selection"`
	AccessTokensURL     string      `json:"access_tokens_url"`
	CreatedAt           time.Time   `json:"created_at"`
}

type accountJSON struct {
	Login string `json:"login"`
	Type  string `json:"type"`
}

func (s *Server) installationJSON(r *http.Request, in *installation) installationJSON {
	return installationJSON{
		ID:                  in.id,
		Account:             accountJSON{Login: in.owner, Type: "Organization"},
		AppID:               s.cfg.AppID,
		TargetType:          "Organization",
		RepositorySelection: "all",
		AccessTokensURL:     s.base(r) + "/api/v3/app/installations/" + strconv.FormatInt(in.id, 10) + "/access_tokens",
		CreatedAt:           in.created,
	}
}

type tokenJSON struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request) {
	if err := s.verifyAppJWT(r); err != nil {
		writeGitHubError(w, http.StatusUnauthorized, "%s", err)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.installationsByID[id]
	if err != nil || !ok {
		writeGitHubError(w, http.StatusNotFound, "Not Found")
		return
	}
	tok := "ghs_" + randomHex(18)
	exp := s.now().Add(installationTokenTTL)
	s.installationTokens[tok] = &installationToken{installationID: in.id, owner: in.owner, expires: exp}
	writeJSON(w, http.StatusCreated, tokenJSON{Token: tok, ExpiresAt: exp})
}

func (s *Server) handleListInstallations(w http.ResponseWriter, r *http.Request) {
	if err := s.verifyAppJWT(r); err != nil {
		writeGitHubError(w, http.StatusUnauthorized, "%s", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]installationJSON, 0, len(s.installations))
	for _, in := range s.installations {
		out = append(out, s.installationJSON(r, in))
	}
	slices.SortFunc(out, func(a, b installationJSON) int { return int(a.ID - b.ID) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleOwnerInstallation(w http.ResponseWriter, r *http.Request) {
	if err := s.verifyAppJWT(r); err != nil {
		writeGitHubError(w, http.StatusUnauthorized, "%s", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.installationFor(r.PathValue("owner"))
	if !ok {
		writeGitHubError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, s.installationJSON(r, in))
}

// scopeFromAPIPath builds the scope of a registration-token or downloads route.
func scopeFromAPIPath(r *http.Request) string {
	switch {
	case r.PathValue("enterprise") != "":
		return "enterprises/" + r.PathValue("enterprise")
	case r.PathValue("repo") != "":
		return r.PathValue("owner") + "/" + r.PathValue("repo")
	default:
		return r.PathValue("org")
	}
}

// authorizeScopeToken accepts a PAT or an unexpired installation token of
// the scope's owner. It writes the error itself. Lock held.
func (s *Server) authorizeScopeToken(w http.ResponseWriter, r *http.Request, scope string) bool {
	tok := authToken(r, "Bearer")
	if tok == "" {
		tok = authToken(r, "token")
	}
	if tok != "" && s.patTokens[tok] {
		return true
	}
	it, ok := s.installationTokens[tok]
	if !ok || !s.now().Before(it.expires) {
		writeGitHubError(w, http.StatusUnauthorized, "Bad credentials")
		return false
	}
	if !strings.EqualFold(it.owner, ownerOfScope(scope)) {
		writeGitHubError(w, http.StatusForbidden, "Resource not accessible by integration")
		return false
	}
	return true
}

func (s *Server) handleRegistrationToken(w http.ResponseWriter, r *http.Request) {
	scope := scopeFromAPIPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authorizeScopeToken(w, r, scope) {
		return
	}
	tok := strings.ToUpper(randomHex(15))
	exp := s.now().Add(registrationTokenTTL)
	s.registrationTokens[tok] = &registrationToken{scope: scope, expires: exp}
	writeJSON(w, http.StatusCreated, tokenJSON{Token: tok, ExpiresAt: exp})
}

type downloadJSON struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	DownloadURL  string `json:"download_url"`
	Filename     string `json:"filename"`
}

func (s *Server) handleDownloads(w http.ResponseWriter, r *http.Request) {
	scope := scopeFromAPIPath(r)
	s.mu.Lock()
	ok := s.authorizeScopeToken(w, r, scope)
	s.mu.Unlock()
	if !ok {
		return
	}
	v := s.cfg.RunnerVersion
	var out []downloadJSON
	for _, osName := range []string{"linux", "osx"} {
		for _, arch := range []string{"x64", "arm64"} {
			file := "actions-runner-" + osName + "-" + arch + "-" + v + ".tar.gz"
			out = append(out, downloadJSON{
				OS:           osName,
				Architecture: arch,
				DownloadURL:  "https://github.com/actions/runner/releases/download/v" + v + "/" + file,
				Filename:     file,
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type adminConnectionJSON struct {
	URL         string `json:"url"`
	Token       string `json:"token"`
	TokenSchema string `json:"token_schema"`
}

func (s *Server) handleRunnerRegistration(w http.ResponseWriter, r *http.Request) {
	var body struct {
		URL         string `json:"url"`
		RunnerEvent string `json:"runner_event"`
	}
	if err := decodeBody(r, &body); err != nil {
		writeGitHubError(w, http.StatusBadRequest, "%s", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.registrationTokens[authToken(r, "RemoteAuth")]
	if !ok || !s.now().Before(rt.expires) {
		writeGitHubError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if body.RunnerEvent != "register" {
		writeGitHubError(w, http.StatusBadRequest, "runner_event must be \"register\", got %q", body.RunnerEvent)
		return
	}
	scope, ok := scopeFromConfigURL(body.URL)
	if !ok {
		writeGitHubError(w, http.StatusBadRequest, "invalid config url %q", body.URL)
		return
	}
	if !sameScope(scope, rt.scope) {
		writeGitHubError(w, http.StatusForbidden, "registration token of %q is not valid for %q", rt.scope, scope)
		return
	}
	tok, _, err := s.signAdminToken(rt.scope)
	if err != nil {
		writeGitHubError(w, http.StatusInternalServerError, "%s", err)
		return
	}
	writeJSON(w, http.StatusOK, adminConnectionJSON{URL: s.base(r) + "/_actions/", Token: tok, TokenSchema: "OAuthAccessToken"})
}

// restRateLimit is the hourly budget of the fake's REST API per
// credential, reported in the X-RateLimit-* headers GitHub sends with
// every REST answer.
const restRateLimit = 5000

// rateCredential is whose budget a request spends: an App's JWTs (a new
// one every few minutes, each signed anew) share their App's budget, as on
// GitHub; any other credential has its own.
func rateCredential(auth string) string {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if parts := strings.Split(tok, "."); ok && len(parts) == 3 {
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var claims struct {
				Iss json.RawMessage `json:"iss"`
			}
			if json.Unmarshal(raw, &claims) == nil && len(claims.Iss) > 0 {
				return "app:" + string(claims.Iss)
			}
		}
	}
	return auth
}

// rateLimitHeaders sets GitHub's rate-limit headers on a REST answer: the
// budget of the request's credential in the current hour. Faults may
// override them. Lock not held.
func (s *Server) rateLimitHeaders(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	s.mu.Lock()
	if now.Sub(s.rateWindow) >= time.Hour {
		s.rateWindow = now.Truncate(time.Hour)
		clear(s.rateUsed)
	}
	cred := rateCredential(r.Header.Get("Authorization"))
	s.rateUsed[cred]++
	used, reset := s.rateUsed[cred], s.rateWindow.Add(time.Hour)
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(restRateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(restRateLimit-used, 0)))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
}
