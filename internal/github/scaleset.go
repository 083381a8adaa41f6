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
	"time"

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
	cached := p.clients[sc.raw]
	if cached != nil {
		cached.lastUse = p.now()
	}
	p.mu.Unlock()

	installationID, err := p.InstallationID(ctx, sc.raw)
	switch {
	case err == nil && cached != nil && cached.installationID == installationID:
		return cached.client, nil
	case err != nil && cached != nil && IsTransient(err):
		// Keep serving the client we have while the lookup is failing.
		return cached.client, nil
	case err != nil:
		return nil, fmt.Errorf("scale set client for %q: %w", sc.raw, err)
	}

	logger := p.libLog.With("scope", sc.raw)
	opts := []scaleset.HTTPOption{
		scaleset.WithRetryableHTTPClint(p.libraryHTTPClient(sc, logger)),
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
	if other := p.clients[sc.raw]; other != nil && other.installationID == installationID {
		return other.client, nil // a concurrent call won
	}
	p.clients[sc.raw] = &cachedClient{client: client, installationID: installationID, lastUse: p.now()}
	if p.sweep == nil {
		p.sweep = time.AfterFunc(clientIdleTimeout, p.sweepClients)
	}
	return client, nil
}

// sweepClients drops the library clients unused for clientIdleTimeout
// (a call in progress keeps the one it has), and comes again while any
// is left.
func (p *Provider) sweepClients() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for scope, c := range p.clients {
		if now.Sub(c.lastUse) >= clientIdleTimeout {
			delete(p.clients, scope)
		}
	}
	if len(p.clients) == 0 {
		p.sweep = nil
		return
	}
	p.sweep.Reset(clientIdleTimeout)
}

// libraryHTTPClient builds the retrying HTTP client handed to the library.
// Without it, go-retryablehttp logs every request to stderr through its
// default std logger; with it, those lines go to our (quiet) slog logger.
//
// The library mutates this client (CheckRetry, ErrorHandler, TLS config)
// under its own lock whenever it renews its admin token, which is why each
// library client gets its own, and why its MessageSessionClient (which polls
// without that lock) must not be used.
func (p *Provider) libraryHTTPClient(sc scopeRef, logger retryablehttp.LeveledLogger) *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: p.libraryTransport(sc), Timeout: p.cfg.Timeout}
	rc.RetryMax = p.cfg.retries()
	rc.RetryWaitMax = p.cfg.RetryWaitMax
	rc.RetryWaitMin = min(rc.RetryWaitMin, p.cfg.RetryWaitMax)
	rc.Logger = logger
	p.gates.libraryHooks(rc)
	// Hand the final answer to the library so that its errors carry the
	// status and the service's message.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return rc
}

// ScaleSetSpec is the scale set a target wants.
type ScaleSetSpec struct {
	Scope string
	// RunnerGroup is the group's name; "" or "default" is the default group.
	RunnerGroup string
	Name        string
	Labels      []string
	// KeptLabels are the labels GitHub kept the last time this scale set
	// was given Labels (nil: not known). A scale set that carries exactly
	// these is not updated again: GitHub dropped the others on purpose and
	// would drop them again (GHES 3.18–3.20 without custom labels).
	KeptLabels []string
}

// ScaleSetResult is what EnsureScaleSet found or made.
type ScaleSetResult struct {
	ScaleSet *scaleset.RunnerScaleSet
	Created  bool
	// Updated reports that the scale set's labels were updated.
	Updated bool
	// Labels are the labels GitHub holds for the scale set.
	Labels []string
	// Dropped are wanted labels GitHub does not hold: workflows asking for
	// them never reach this scale set.
	Dropped []string
}

// EnsureScaleSet returns the scale set called spec.Name in the runner
// group, creating it only when the service answered that it does not
// exist, and updating its labels when they differ from spec.Labels (unless
// they are spec.KeptLabels). After a create or an update it reads the scale
// set back: GHES 3.18–3.20 without the custom-labels feature keep only the
// scale set's name as its label and drop the rest silently (actions/scaleset
// README, "Multiple labels per scale set"); Dropped says which.
//
// A runner group that does not exist is ErrRunnerGroupNotFound; any other
// error is returned as it is (retry later, never create on it).
func (p *Provider) EnsureScaleSet(ctx context.Context, spec ScaleSetSpec) (ScaleSetResult, error) {
	name := spec.Name
	client, err := p.ScaleSetClient(ctx, spec.Scope)
	if err != nil {
		return ScaleSetResult{}, fmt.Errorf("ensure scale set %q: %w", name, err)
	}
	ctx = withScope(ctx, spec.Scope)

	groupID := defaultRunnerGroupID
	if group := spec.RunnerGroup; group != "" && !strings.EqualFold(group, scaleset.DefaultRunnerGroup) {
		g, err := client.GetRunnerGroupByName(ctx, url.QueryEscape(group))
		if err != nil {
			// v0.2.0 has no sentinel for a missing group; its message is fixed.
			if strings.Contains(err.Error(), "no runner group found with name") {
				return ScaleSetResult{}, fmt.Errorf("ensure scale set %q: %w: %q", name, ErrRunnerGroupNotFound, group)
			}
			return ScaleSetResult{}, fmt.Errorf("ensure scale set %q: get runner group %q: %w", name, group, err)
		}
		groupID = g.ID
	}

	wanted := make([]scaleset.Label, 0, len(spec.Labels))
	for _, l := range spec.Labels {
		wanted = append(wanted, scaleset.Label{Name: l})
	}
	res := ScaleSetResult{}

	set, err := client.GetRunnerScaleSet(ctx, groupID, url.QueryEscape(name))
	switch {
	case err != nil:
		return ScaleSetResult{}, fmt.Errorf("get scale set %q: %w", name, err)
	case set == nil:
		created, err := client.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{
			Name:          name,
			RunnerGroupID: groupID,
			Labels:        wanted,
			RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
		})
		if err != nil {
			return ScaleSetResult{}, fmt.Errorf("create scale set %q: %w", name, err)
		}
		if created == nil || created.ID == 0 {
			return ScaleSetResult{}, fmt.Errorf("create scale set %q: %w", name, errors.New("answer has no scale set ID"))
		}
		p.log.Debug("scale set created", "scope", spec.Scope, "scaleset", created.ID, "name", name)
		set, res.Created = created, true
	case sameLabels(labelNames(set.Labels), spec.Labels):
	case spec.KeptLabels != nil && sameLabels(labelNames(set.Labels), spec.KeptLabels):
		// GitHub already refused the other labels: do not ask again.
	default:
		if _, err := client.UpdateRunnerScaleSet(ctx, set.ID, &scaleset.RunnerScaleSet{
			Name:          set.Name,
			RunnerGroupID: groupID,
			Labels:        wanted,
			RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
		}); err != nil {
			return ScaleSetResult{}, fmt.Errorf("update labels of scale set %q: %w", name, err)
		}
		p.log.Debug("scale set labels updated", "scope", spec.Scope, "scaleset", set.ID, "name", name)
		res.Updated = true
	}
	if res.Created || res.Updated {
		// The answer to a create or update is not proof of what was kept:
		// read the scale set back.
		back, err := client.GetRunnerScaleSetByID(ctx, set.ID)
		if err != nil {
			return ScaleSetResult{}, fmt.Errorf("read back scale set %q: %w", name, err)
		}
		if back == nil || back.ID != set.ID {
			return ScaleSetResult{}, fmt.Errorf("read back scale set %q: %w", name, errors.New("scale set not found after write"))
		}
		set = back
	}
	res.ScaleSet = set
	res.Labels = labelNames(set.Labels)
	res.Dropped = missingLabels(res.Labels, spec.Labels)
	return res, nil
}

// GetOrCreateScaleSet is EnsureScaleSet for callers that only need the
// scale set and whether it was created (tests and tools).
func (p *Provider) GetOrCreateScaleSet(ctx context.Context, scope, runnerGroup, name string, labels []string) (*scaleset.RunnerScaleSet, bool, error) {
	res, err := p.EnsureScaleSet(ctx, ScaleSetSpec{Scope: scope, RunnerGroup: runnerGroup, Name: name, Labels: labels})
	return res.ScaleSet, res.Created, err
}

// DeleteScaleSet deletes a scale set on GitHub.
func (p *Provider) DeleteScaleSet(ctx context.Context, scope string, scaleSetID int) error {
	client, err := p.ScaleSetClient(ctx, scope)
	if err == nil {
		err = client.DeleteRunnerScaleSet(withScope(ctx, scope), scaleSetID)
	}
	if err != nil {
		return fmt.Errorf("delete scale set %d: %w", scaleSetID, err)
	}
	return nil
}

func labelNames(ls []scaleset.Label) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

// missingLabels returns the wanted labels that have lacks, ignoring case.
func missingLabels(have, wanted []string) []string {
	var out []string
	for _, w := range wanted {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			out = append(out, w)
		}
	}
	return out
}

// sameLabels compares label names as sets, ignoring case like GitHub does.
func sameLabels(have, want []string) bool {
	norm := func(names []string) []string {
		out := make([]string, 0, len(names))
		for _, n := range names {
			out = append(out, strings.ToLower(n))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(have), norm(want))
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
