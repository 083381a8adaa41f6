package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// RunnerVersion resolves RUNNER_VERSION for scope to a concrete "X.Y.Z".
// "latest" (or "") is looked up in the scope's runner downloads list, the way
// myshoes does, and cached for 24 h per scope; "vX.Y.Z" and "X.Y.Z" are
// normalized without a call; anything else is ErrInvalidRunnerVersion.
func (p *Provider) RunnerVersion(ctx context.Context, scope, requested string) (string, error) {
	if v, latest, err := parseRunnerVersion(requested); err != nil || !latest {
		return v, err
	}

	sc, err := parseScope(scope)
	if err != nil {
		return "", fmt.Errorf("resolve latest runner version: %w", err)
	}
	p.mu.Lock()
	c, ok := p.versions[sc.raw]
	p.mu.Unlock()
	if ok && p.now().Before(c.expires) {
		return c.version, nil
	}

	v, err := p.latestRunnerVersion(ctx, sc)
	if err != nil {
		return "", fmt.Errorf("resolve latest runner version for %q: %w", sc.raw, err)
	}
	p.mu.Lock()
	p.versions[sc.raw] = cachedVersion{version: v, expires: p.now().Add(runnerVersionTTL)}
	p.mu.Unlock()
	p.log.Debug("latest runner version resolved", "scope", sc.raw, "version", v)
	return v, nil
}

// latestRunnerVersion reads GET {api}/{orgs|repos|enterprises}/.../actions/runners/downloads
// and takes the version of the linux/x64 tarball.
func (p *Provider) latestRunnerVersion(ctx context.Context, sc scopeRef) (string, error) {
	token, err := p.githubToken(ctx, sc)
	if err != nil {
		return "", err
	}
	r, err := p.send(ctx, p.httpc, &request{
		method: http.MethodGet,
		url:    p.api + sc.apiPrefix() + "/actions/runners/downloads",
		header: http.Header{"Accept": {acceptGitHubJSON}, "Authorization": {"Bearer " + token}},
		retry:  true,
	})
	if err != nil {
		return "", err
	}
	if r.status != http.StatusOK {
		return "", r.statusError()
	}
	var downloads []struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		DownloadURL  string `json:"download_url"`
		Filename     string `json:"filename"`
	}
	if err := json.Unmarshal(r.body, &downloads); err != nil {
		return "", fmt.Errorf("decode runner downloads: %w", err)
	}
	for _, d := range downloads {
		if d.OS != "linux" || d.Architecture != "x64" {
			continue
		}
		for _, name := range []string{path.Base(d.DownloadURL), d.Filename} {
			if v, ok := tarballVersion(name); ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("runner downloads: no version in linux/x64 download url %q", d.DownloadURL)
	}
	return "", fmt.Errorf("runner downloads: no linux/x64 entry among %d", len(downloads))
}

// tarballVersion extracts X.Y.Z from "actions-runner-linux-x64-X.Y.Z.tar.gz".
func tarballVersion(name string) (string, bool) {
	const prefix, suffix = "actions-runner-linux-x64-", ".tar.gz"
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return "", false
	}
	return normalizeVersion(strings.TrimSuffix(strings.TrimPrefix(name, prefix), suffix))
}

// normalizeVersion accepts "X.Y.Z" or "vX.Y.Z" (decimal numbers) and returns
// "X.Y.Z".
func normalizeVersion(s string) (string, bool) {
	if strings.HasPrefix(s, "v") || strings.HasPrefix(s, "V") {
		s = s[1:]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return "", false
	}
	for _, part := range parts {
		if part == "" || len(part) > 9 {
			return "", false
		}
		if _, err := strconv.ParseUint(part, 10, 32); err != nil {
			return "", false
		}
	}
	return s, true
}

// CheckRunnerVersion reports whether v is a runner version RunnerVersion
// accepts: "latest" (or empty), "X.Y.Z" or "vX.Y.Z". It makes no call.
func CheckRunnerVersion(v string) error {
	_, _, err := parseRunnerVersion(v)
	return err
}

// parseRunnerVersion returns the normalized X.Y.Z, or latest=true for
// "latest" and "".
func parseRunnerVersion(requested string) (version string, latest bool, err error) {
	v := strings.TrimSpace(requested)
	if v == "" || strings.EqualFold(v, "latest") {
		return "", true, nil
	}
	version, ok := normalizeVersion(v)
	if !ok {
		return "", false, fmt.Errorf("runner version %q: %w: want latest, X.Y.Z or vX.Y.Z", requested, ErrInvalidRunnerVersion)
	}
	return version, false, nil
}
