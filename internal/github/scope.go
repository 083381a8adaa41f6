package github

import (
	"fmt"
	"net/url"
	"strings"
)

type scopeKind int

const (
	scopeOrg scopeKind = iota + 1
	scopeRepo
	scopeEnterprise
)

// scopeRef is a parsed scope: "org", "owner/repo" or "enterprises/e".
type scopeRef struct {
	raw   string // normalized: no surrounding slashes
	kind  scopeKind
	owner string // org, repo owner or enterprise slug
	repo  string
}

func parseScope(scope string) (scopeRef, error) {
	raw := strings.Trim(strings.TrimSpace(scope), "/")
	parts := strings.Split(raw, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, " \t\r\n?#%\\") {
			return scopeRef{}, fmt.Errorf("%w: %q", ErrInvalidScope, scope)
		}
	}
	switch {
	case len(parts) == 1:
		return scopeRef{raw: raw, kind: scopeOrg, owner: parts[0]}, nil
	case len(parts) == 2 && strings.EqualFold(parts[0], "enterprises"):
		return scopeRef{raw: raw, kind: scopeEnterprise, owner: parts[1]}, nil
	case len(parts) == 2:
		return scopeRef{raw: raw, kind: scopeRepo, owner: parts[0], repo: parts[1]}, nil
	default:
		return scopeRef{}, fmt.Errorf("%w: %q", ErrInvalidScope, scope)
	}
}

// apiPrefix is the REST path of the scope: orgs/o, repos/o/r or enterprises/e.
func (s scopeRef) apiPrefix() string {
	switch s.kind {
	case scopeRepo:
		return "/repos/" + url.PathEscape(s.owner) + "/" + url.PathEscape(s.repo)
	case scopeEnterprise:
		return "/enterprises/" + url.PathEscape(s.owner)
	default:
		return "/orgs/" + url.PathEscape(s.owner)
	}
}

// isHostedGitHub mirrors the scaleset library: github.com, www.github.com,
// github.localhost and *.ghe.com have their API at api.<host>; anything else
// is a GHES with its API at /api/v3.
func isHostedGitHub(host string) bool {
	return strings.EqualFold(host, "github.com") ||
		strings.EqualFold(host, "www.github.com") ||
		strings.EqualFold(host, "github.localhost") ||
		strings.HasSuffix(strings.ToLower(host), ".ghe.com")
}

// apiBaseURL returns the REST API root for a GitHub base URL, without a
// trailing slash (the same rule as the library's gitHubAPIURL).
func apiBaseURL(base *url.URL) string {
	if isHostedGitHub(base.Host) {
		host := "api." + base.Host
		if strings.EqualFold(base.Host, "www.github.com") {
			host = "api.github.com"
		}
		return base.Scheme + "://" + host
	}
	return base.Scheme + "://" + base.Host + "/api/v3"
}
