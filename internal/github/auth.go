package github

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
)

const acceptGitHubJSON = "application/vnd.github+json"

// InstallationID returns the GitHub App installation that covers scope
// ("org", "owner/repo" or "enterprises/e"), cached for an hour. A missing
// installation is ErrNotInstalled, refused app credentials ErrUnauthorized.
// With a personal access token there is no installation: it returns 0, nil.
func (p *Provider) InstallationID(ctx context.Context, scope string) (int64, error) {
	if p.key == nil {
		return 0, nil
	}
	sc, err := parseScope(scope)
	if err != nil {
		return 0, fmt.Errorf("look up installation: %w", err)
	}

	p.mu.Lock()
	c, ok := p.installs[sc.raw]
	p.mu.Unlock()
	if ok && p.now().Before(c.expires) {
		return c.id, nil
	}

	var id int64
	if sc.kind == scopeEnterprise {
		id, err = p.enterpriseInstallation(ctx, sc)
	} else {
		id, err = p.directInstallation(ctx, sc)
	}
	if err != nil {
		return 0, fmt.Errorf("look up installation for %q: %w", sc.raw, err)
	}

	p.mu.Lock()
	p.installs[sc.raw] = cachedInstallation{id: id, expires: p.now().Add(installationTTL)}
	p.mu.Unlock()
	p.log.Debug("github app installation resolved", "scope", sc.raw, "installation_id", id)
	return id, nil
}

// directInstallation: GET /orgs/{o}/installation or /repos/{o}/{r}/installation.
func (p *Provider) directInstallation(ctx context.Context, sc scopeRef) (int64, error) {
	ctx = withScope(ctx, appScope) // an app call: the app's rate limit
	r, err := p.send(ctx, p.appc, &request{
		method: http.MethodGet,
		url:    p.api + sc.apiPrefix() + "/installation",
		header: http.Header{"Accept": {acceptGitHubJSON}},
		retry:  true,
	})
	if err != nil {
		return 0, err
	}
	if err := appStatusError(r, http.StatusOK); err != nil {
		return 0, err
	}
	var inst struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(r.body, &inst); err != nil || inst.ID == 0 {
		return 0, fmt.Errorf("decode installation: %w", errors.Join(err, errors.New("missing id")))
	}
	return inst.ID, nil
}

// enterpriseInstallation lists the app's installations (GET /app/installations)
// and matches the enterprise's slug or login.
func (p *Provider) enterpriseInstallation(ctx context.Context, sc scopeRef) (int64, error) {
	ctx = withScope(ctx, appScope) // an app call: the app's rate limit
	const perPage = 100
	for page := 1; ; page++ {
		r, err := p.send(ctx, p.appc, &request{
			method: http.MethodGet,
			url:    fmt.Sprintf("%s/app/installations?per_page=%d&page=%d", p.api, perPage, page),
			header: http.Header{"Accept": {acceptGitHubJSON}},
			retry:  true,
		})
		if err != nil {
			return 0, err
		}
		if err := appStatusError(r, http.StatusOK); err != nil {
			return 0, err
		}
		var list []struct {
			ID      int64 `json:"id"`
			Account struct {
				Login string `json:"login"`
				Slug  string `json:"slug"`
			} `json:"account"`
			TargetType string `json:"target_type"`
		}
		if err := json.Unmarshal(r.body, &list); err != nil {
			return 0, fmt.Errorf("decode installations: %w", err)
		}
		for _, inst := range list {
			if strings.EqualFold(inst.Account.Slug, sc.owner) || strings.EqualFold(inst.Account.Login, sc.owner) {
				return inst.ID, nil
			}
		}
		if len(list) < perPage {
			return 0, ErrNotInstalled
		}
	}
}

// appStatusError maps an answer to an app-authenticated call: 404 is
// ErrNotInstalled, 401 ErrUnauthorized, any other unexpected status a
// *StatusError.
func appStatusError(r *response, want int) error {
	switch r.status {
	case want:
		return nil
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotInstalled, r.statusError())
	default:
		return r.statusError() // 401 matches ErrUnauthorized
	}
}

// installationTransport returns the cached ghinstallation transport for an
// installation; it keeps the installation access token until it expires.
func (p *Provider) installationTransport(id int64) *ghinstallation.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tr, ok := p.instTrans[id]; ok {
		return tr
	}
	apps := ghinstallation.NewAppsTransportFromPrivateKey(p.gated, p.cfg.AppID, p.key)
	apps.BaseURL = p.api
	tr := ghinstallation.NewFromAppsTransport(apps, id)
	tr.BaseURL = p.api
	tr.Client = p.httpc
	p.instTrans[id] = tr
	return tr
}

// githubToken returns the credential for REST calls on scope: an
// installation access token (POST /app/installations/{id}/access_tokens,
// cached by ghinstallation until shortly before it expires) or the PAT.
func (p *Provider) githubToken(ctx context.Context, sc scopeRef) (string, error) {
	if p.key == nil {
		return p.cfg.Token, nil
	}
	id, err := p.InstallationID(ctx, sc.raw)
	if err != nil {
		return "", err
	}
	tr := p.installationTransport(id)
	for attempt := 0; ; attempt++ {
		// The token request is made with the app's JWT: the app's rate limit.
		tctx, cancel := context.WithTimeout(withScope(ctx, appScope), p.cfg.Timeout)
		tok, err := tr.Token(tctx)
		cancel()
		if err == nil {
			return tok, nil
		}
		err = p.installationTokenError(sc, id, err)
		if ctx.Err() != nil || attempt >= p.cfg.retries() || !IsTransient(err) {
			return "", fmt.Errorf("create installation token: %w", err)
		}
		if werr := p.backoff(ctx, attempt); werr != nil {
			return "", fmt.Errorf("create installation token: %w", err)
		}
	}
}

// installationTokenError turns a ghinstallation error into ours, closing the
// answer's body that ghinstallation leaves open on a non-2xx status.
func (p *Provider) installationTokenError(sc scopeRef, id int64, err error) error {
	var he *ghinstallation.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(he.Response.Body, maxResponseBody))
	he.Response.Body.Close()
	req := he.Response.Request
	if req == nil {
		req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/app/installations/%d/access_tokens", p.api, id), nil)
	}
	r := &response{req: req, status: he.Response.StatusCode, header: he.Response.Header, body: body}
	if r.status == http.StatusNotFound {
		// The installation is gone; look it up again next time.
		p.mu.Lock()
		delete(p.installs, sc.raw)
		delete(p.instTrans, id)
		p.mu.Unlock()
	}
	return appStatusError(r, http.StatusCreated)
}

// adminConn is the Actions service connection of a scope.
type adminConn struct {
	url       string // Actions service base URL
	token     string // admin JWT
	refreshAt time.Time
}

// adminConn returns the Actions service URL and admin token for scope, the
// same way the scaleset library gets them: installation token or PAT →
// registration token → runner-registration. It is cached until 60 s before
// the admin token's exp.
func (p *Provider) adminConn(ctx context.Context, sc scopeRef) (adminConn, error) {
	p.mu.Lock()
	c, ok := p.admins[sc.raw]
	p.mu.Unlock()
	if ok && p.now().Before(c.refreshAt) {
		return c, nil
	}

	c, err := p.newAdminConn(ctx, sc)
	if err != nil {
		return adminConn{}, fmt.Errorf("connect to actions service for %q: %w", sc.raw, err)
	}
	if p.now().Before(c.refreshAt) {
		p.mu.Lock()
		p.admins[sc.raw] = c
		p.mu.Unlock()
	}
	p.log.Debug("actions service admin connection established", "scope", sc.raw, "refresh_at", c.refreshAt)
	return c, nil
}

// dropAdminConn forgets the cached admin connection if it still holds token.
func (p *Provider) dropAdminConn(sc scopeRef, token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.admins[sc.raw]; ok && c.token == token {
		delete(p.admins, sc.raw)
	}
}

func (p *Provider) newAdminConn(ctx context.Context, sc scopeRef) (adminConn, error) {
	ctx = withScope(ctx, sc.raw)
	ghToken, err := p.githubToken(ctx, sc)
	if err != nil {
		return adminConn{}, err
	}

	r, err := p.send(ctx, p.httpc, &request{
		method: http.MethodPost,
		url:    p.api + sc.apiPrefix() + "/actions/runners/registration-token",
		header: http.Header{"Accept": {acceptGitHubJSON}, "Authorization": {"Bearer " + ghToken}},
		retry:  true,
	})
	if err != nil {
		return adminConn{}, fmt.Errorf("create registration token: %w", err)
	}
	if r.status != http.StatusCreated {
		return adminConn{}, fmt.Errorf("create registration token: %w", r.statusError())
	}
	var reg struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &reg); err != nil || reg.Token == "" {
		return adminConn{}, fmt.Errorf("create registration token: decode answer: %w", errors.Join(err, errors.New("missing token")))
	}

	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]string{"url": p.base + "/" + sc.raw, "runner_event": "register"}); err != nil {
		return adminConn{}, err
	}
	// A fresh registration token is sometimes refused for a moment; the
	// library retries 401 and 403 here, and so do we.
	var ans *response
	for attempt := 0; ; attempt++ {
		ans, err = p.send(ctx, p.httpc, &request{
			method: http.MethodPost,
			url:    p.api + "/actions/runner-registration",
			body:   body.Bytes(),
			header: http.Header{"Authorization": {"RemoteAuth " + reg.Token}},
			retry:  true,
		})
		if err != nil {
			return adminConn{}, fmt.Errorf("register runner connection: %w", err)
		}
		denied := ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden
		if !denied || attempt >= p.cfg.retries() {
			break
		}
		if p.backoff(ctx, attempt) != nil {
			break
		}
	}
	if ans.status < 200 || ans.status > 299 {
		return adminConn{}, fmt.Errorf("register runner connection: %w", ans.statusError())
	}
	var conn struct {
		URL   string `json:"url"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(ans.body, &conn); err != nil {
		return adminConn{}, fmt.Errorf("register runner connection: decode answer: %w", err)
	}
	if conn.URL == "" || conn.Token == "" {
		return adminConn{}, errors.New("register runner connection: answer misses url or token")
	}
	exp, err := jwtExpiry(conn.Token)
	if err != nil {
		return adminConn{}, fmt.Errorf("register runner connection: admin token: %w", err)
	}
	return adminConn{url: conn.URL, token: conn.Token, refreshAt: exp.Add(-adminTokenLeeway)}, nil
}

// jwtExpiry reads the exp claim of a JWT without verifying it. The token
// itself never appears in an error.
func jwtExpiry(token string) (time.Time, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, errors.New("JWT payload is not base64url")
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, errors.New("JWT payload is not JSON")
	}
	if claims.Exp == nil {
		return time.Time{}, errors.New("JWT has no exp")
	}
	secs, err := strconv.ParseFloat(claims.Exp.String(), 64)
	if err != nil || secs <= 0 {
		return time.Time{}, errors.New("JWT exp is not a positive number")
	}
	return time.Unix(int64(secs), 0), nil
}
