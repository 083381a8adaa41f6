package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/actions/scaleset"
	"github.com/hashicorp/go-retryablehttp"
)

// defaultRunnerGroupID is the ID of the "default" runner group, which the
// library's own example uses without a lookup.
const defaultRunnerGroupID = 1

// ScaleSetClient returns the scaleset library client for scope, cached per
// scope. With an app it is rebuilt when the scope's installation changes.
//
// Use it for scale sets, JIT configs and runners; use CreateSession for
// message sessions (do not call its MessageSessionClient: see
// libraryHTTPClient).
func (p *Provider) ScaleSetClient(ctx context.Context, scope string) (*scaleset.Client, error) {
	sc, err := parseScope(scope)
	if err != nil {
		return nil, fmt.Errorf("scale set client: %w", err)
	}

	p.mu.Lock()
	cached, ok := p.clients[sc.raw]
	p.mu.Unlock()

	installationID, err := p.InstallationID(ctx, sc.raw)
	switch {
	case err == nil && ok && cached.installationID == installationID:
		return cached.client, nil
	case err != nil && ok && IsTransient(err):
		// Keep serving the client we have while the lookup is failing.
		return cached.client, nil
	case err != nil:
		return nil, fmt.Errorf("scale set client for %q: %w", sc.raw, err)
	}

	logger := p.libLog.With("scope", sc.raw)
	opts := []scaleset.HTTPOption{
		scaleset.WithRetryableHTTPClint(p.libraryHTTPClient(logger)),
		scaleset.WithRetryMax(p.cfg.retries()),
		scaleset.WithRetryWaitMax(p.cfg.RetryWaitMax),
		scaleset.WithTimeout(p.cfg.Timeout),
		scaleset.WithLogger(logger),
	}
	if p.cfg.RootCAs != nil {
		opts = append(opts, scaleset.WithRootCAs(p.cfg.RootCAs))
	}
	configURL := p.base + "/" + sc.raw

	var client *scaleset.Client
	if p.key != nil {
		client, err = scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
			GitHubConfigURL: configURL,
			GitHubAppAuth: scaleset.GitHubAppAuth{
				ClientID:       strconv.FormatInt(p.cfg.AppID, 10),
				InstallationID: installationID,
				PrivateKey:     p.keyPEM,
			},
			SystemInfo: p.cfg.SystemInfo,
		}, opts...)
	} else {
		client, err = scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
			GitHubConfigURL:     configURL,
			PersonalAccessToken: p.cfg.Token,
			SystemInfo:          p.cfg.SystemInfo,
		}, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("scale set client for %q: %w", sc.raw, err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if other, ok := p.clients[sc.raw]; ok && other.installationID == installationID {
		return other.client, nil // a concurrent call won
	}
	p.clients[sc.raw] = cachedClient{client: client, installationID: installationID}
	return client, nil
}

// libraryHTTPClient builds the retrying HTTP client handed to the library.
// Without it, go-retryablehttp logs every request to stderr through its
// default std logger; with it, those lines go to our (quiet) slog logger.
//
// The library mutates this client (CheckRetry, ErrorHandler, TLS config)
// under its own lock whenever it renews its admin token, which is why each
// library client gets its own, and why its MessageSessionClient (which polls
// without that lock) must not be used.
func (p *Provider) libraryHTTPClient(logger retryablehttp.LeveledLogger) *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: p.transport.Clone(), Timeout: p.cfg.Timeout}
	rc.RetryMax = p.cfg.retries()
	rc.RetryWaitMax = p.cfg.RetryWaitMax
	rc.RetryWaitMin = min(rc.RetryWaitMin, p.cfg.RetryWaitMax)
	rc.Logger = logger
	// Hand the final answer to the library so that its errors carry the
	// status and the service's message.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return rc
}

// GetOrCreateScaleSet returns the scale set called name in runnerGroup
// ("" or "default" is the default group), creating it only when the
// service answered that it does not exist. Created reports a creation. An
// existing scale set whose labels differ from labels is updated to them.
// A runner group that does not exist is ErrRunnerGroupNotFound; any other
// error is returned as it is (retry later, never create on it).
func (p *Provider) GetOrCreateScaleSet(ctx context.Context, scope, runnerGroup, name string, labels []string) (*scaleset.RunnerScaleSet, bool, error) {
	client, err := p.ScaleSetClient(ctx, scope)
	if err != nil {
		return nil, false, fmt.Errorf("get or create scale set %q: %w", name, err)
	}

	groupID := defaultRunnerGroupID
	if runnerGroup != "" && !strings.EqualFold(runnerGroup, scaleset.DefaultRunnerGroup) {
		group, err := client.GetRunnerGroupByName(ctx, url.QueryEscape(runnerGroup))
		if err != nil {
			// v0.2.0 has no sentinel for a missing group; its message is fixed.
			if strings.Contains(err.Error(), "no runner group found with name") {
				return nil, false, fmt.Errorf("get or create scale set %q: %w: %q", name, ErrRunnerGroupNotFound, runnerGroup)
			}
			return nil, false, fmt.Errorf("get or create scale set %q: get runner group %q: %w", name, runnerGroup, err)
		}
		groupID = group.ID
	}

	wanted := make([]scaleset.Label, 0, len(labels))
	for _, l := range labels {
		wanted = append(wanted, scaleset.Label{Name: l})
	}

	set, err := client.GetRunnerScaleSet(ctx, groupID, url.QueryEscape(name))
	if err != nil {
		return nil, false, fmt.Errorf("get scale set %q: %w", name, err)
	}
	if set == nil {
		created, err := client.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{
			Name:          name,
			RunnerGroupID: groupID,
			Labels:        wanted,
			RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
		})
		if err != nil {
			return nil, false, fmt.Errorf("create scale set %q: %w", name, err)
		}
		if created == nil || created.ID == 0 {
			return nil, false, fmt.Errorf("create scale set %q: %w", name, errors.New("answer has no scale set ID"))
		}
		p.log.Debug("scale set created", "scope", scope, "scaleset", created.ID, "name", name)
		return created, true, nil
	}

	if sameLabels(set.Labels, labels) {
		return set, false, nil
	}
	updated, err := client.UpdateRunnerScaleSet(ctx, set.ID, &scaleset.RunnerScaleSet{
		Name:          set.Name,
		RunnerGroupID: groupID,
		Labels:        wanted,
		RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
	})
	if err != nil {
		return nil, false, fmt.Errorf("update labels of scale set %q: %w", name, err)
	}
	p.log.Debug("scale set labels updated", "scope", scope, "scaleset", set.ID, "name", name)
	return updated, false, nil
}

// sameLabels compares label names as sets, ignoring case like GitHub does.
func sameLabels(have []scaleset.Label, want []string) bool {
	norm := func(names []string) []string {
		out := make([]string, 0, len(names))
		for _, n := range names {
			out = append(out, strings.ToLower(n))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	names := make([]string, 0, len(have))
	for _, l := range have {
		names = append(names, l.Name)
	}
	return slices.Equal(norm(names), norm(want))
}

// ScaleSetName is the scale set name for a scope: prefix + "-" + scope, with
// every character outside [a-zA-Z0-9-] replaced by "-". An empty prefix gives
// the mapped scope alone.
func ScaleSetName(prefix, scope string) string {
	name := scope
	if prefix != "" {
		name = prefix + "-" + scope
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			return r
		}
		return '-'
	}, name)
}

// ScaleSetLabels is the label list of a scale set: "self-hosted", its name,
// then extra, without empty or repeated labels (compared ignoring case).
func ScaleSetLabels(name string, extra []string) []string {
	out := make([]string, 0, 2+len(extra))
	seen := map[string]bool{}
	for _, l := range append([]string{"self-hosted", name}, extra...) {
		l = strings.TrimSpace(l)
		if l == "" || seen[strings.ToLower(l)] {
			continue
		}
		seen[strings.ToLower(l)] = true
		out = append(out, l)
	}
	return out
}
