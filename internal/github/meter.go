package github

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Every HTTP exchange with GitHub (the REST API, the Actions service, the
// broker) passes meterTransport, which hands it to Recorder.GitHubRequest
// by operation and status: our own calls, ghinstallation's token requests
// and the scaleset library's calls alike (see libraryTransport). Each
// attempt is one exchange: a call retried twice counts three.
//
// The operation is one of the Op* names below, never anything taken from
// the URL as is, so that the metrics stay a few series whatever the number
// of scopes, scale sets, runners or sessions: an ID, an owner or a token
// never becomes a label value.

// Operations, for Recorder.GitHubRequest.
const (
	OpGetMessage         = "get_message"         // long-poll of the message queue
	OpAcknowledge        = "acknowledge"         // delete a message from the queue
	OpAcquireJobs        = "acquire_jobs"        // GHES: acquire available jobs
	OpAcquirableJobs     = "acquirable_jobs"     // list acquirable jobs
	OpCreateSession      = "create_session"      // open a message session
	OpRefreshSession     = "refresh_session"     // renew the queue token
	OpDeleteSession      = "delete_session"      // close a message session
	OpGenerateJITConfig  = "generate_jit_config" // a runner's JIT config
	OpGetRunner          = "get_runner"          // a runner, by ID or by name
	OpRemoveRunner       = "remove_runner"       // delete a runner
	OpGetScaleSet        = "get_scale_set"       // a scale set, by ID or by name
	OpCreateScaleSet     = "create_scale_set"
	OpUpdateScaleSet     = "update_scale_set"
	OpDeleteScaleSet     = "delete_scale_set"
	OpGetRunnerGroup     = "get_runner_group"    // a runner group, by name
	OpGetInstallation    = "get_installation"    // the app's installation on a scope
	OpListInstallations  = "list_installations"  // the app's installations
	OpAccessToken        = "access_token"        // an installation token
	OpRegistrationToken  = "registration_token"  // a runner registration token
	OpRunnerRegistration = "runner_registration" // the Actions service URL and admin token
	OpRunnerVersion      = "runner_version"      // the latest runner version
	OpOther              = "other"               // anything else
)

// CodeTransportError is the code of an exchange that got no answer: a
// connection error, a timeout, a cancelled call.
const CodeTransportError = "error"

// operations maps the shape of a request, its method and the last
// segments of its path ("*" for any one segment), to its operation. The
// first match, longest patterns first, wins. The paths are those of
// github.com, GHE.com and GHES (under /api/v3), and of the Actions service
// (under a tenant prefix).
var operations = []struct {
	method string
	suffix []string
	op     string
}{
	{http.MethodPost, split("app/installations/*/access_tokens"), OpAccessToken},
	{http.MethodPatch, split("runnerscalesets/*/sessions/*"), OpRefreshSession},
	{http.MethodDelete, split("runnerscalesets/*/sessions/*"), OpDeleteSession},
	{http.MethodPost, split("actions/runners/registration-token"), OpRegistrationToken},
	{http.MethodGet, split("actions/runners/downloads"), OpRunnerVersion},
	{http.MethodPost, split("runnerscalesets/*/sessions"), OpCreateSession},
	{http.MethodPost, split("runnerscalesets/*/acquirejobs"), OpAcquireJobs},
	{http.MethodGet, split("runnerscalesets/*/acquirablejobs"), OpAcquirableJobs},
	{http.MethodPost, split("runnerscalesets/*/generatejitconfig"), OpGenerateJITConfig},
	{http.MethodPost, split("actions/runner-registration"), OpRunnerRegistration},
	{http.MethodGet, split("releases/latest"), OpRunnerVersion},
	{http.MethodGet, split("app/installations"), OpListInstallations},
	{http.MethodGet, split("runnerscalesets/*"), OpGetScaleSet},
	{http.MethodPatch, split("runnerscalesets/*"), OpUpdateScaleSet},
	{http.MethodDelete, split("runnerscalesets/*"), OpDeleteScaleSet},
	{http.MethodGet, split("agents/*"), OpGetRunner},
	{http.MethodDelete, split("agents/*"), OpRemoveRunner},
	{http.MethodDelete, split("messages/*"), OpAcknowledge},
	{http.MethodGet, split("runnerscalesets"), OpGetScaleSet},
	{http.MethodPost, split("runnerscalesets"), OpCreateScaleSet},
	{http.MethodGet, split("runnergroups"), OpGetRunnerGroup},
	{http.MethodGet, split("agents"), OpGetRunner},
	{http.MethodGet, split("messages"), OpGetMessage},
	{http.MethodGet, split("installation"), OpGetInstallation},
}

func split(path string) []string { return strings.Split(path, "/") }

// operationOf names the operation of a request: the one its context was
// tagged with (withOperation), else the one its method and path shape
// say, else OpOther.
func operationOf(req *http.Request) string {
	if op, ok := req.Context().Value(operationKey{}).(string); ok {
		return op
	}
	return operationFor(req.Method, req.URL)
}

// operationFor names the operation of a method and URL by the shape of
// the path (see operations).
func operationFor(method string, u *url.URL) string {
	if u == nil {
		return OpOther
	}
	var segs []string
	for s := range strings.SplitSeq(u.Path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	for _, o := range operations {
		if o.method != method || len(o.suffix) > len(segs) {
			continue
		}
		tail := segs[len(segs)-len(o.suffix):]
		match := true
		for i, want := range o.suffix {
			if want != "*" && want != tail[i] {
				match = false
				break
			}
		}
		if match {
			return o.op
		}
	}
	return OpOther
}

type operationKey struct{}

// withOperation tags ctx with the operation of the calls made with it,
// for the calls whose URL GitHub chooses (the message queue's), which a
// path shape cannot name for certain.
func withOperation(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, operationKey{}, op)
}

// meterTransport observes every exchange it carries. It sits right on the
// connection: a wait at the rate-limit gate is not part of the time.
type meterTransport struct {
	base http.RoundTripper
	rec  Recorder
}

func (t *meterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	code := CodeTransportError
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.rec.GitHubRequest(operationOf(req), code, time.Since(start))
	return resp, err
}

// libraryTransport returns the transport for one scaleset library
// client's HTTP client. The library requires a bare *http.Transport there
// (it sets TLS options on it), so a wrapping RoundTripper cannot be handed
// in; instead the returned transport hands every http and https request to
// a meterTransport over ours (RegisterProtocol), where the library's own
// settings would not apply. It sets none that ours lacks: RootCAs are the
// same, and it is given no proxy and no insecure TLS. The connections are
// ours too: a clone per scope kept an idle connection per target for
// 90 s after its scale set lookup (1,000 at the start of 1,000 targets,
// with two goroutines and their buffers each; issue 15), and dialled
// again for its next call; one pool serves them all.
// The returned transport never connects itself; it speaks HTTP/1 only so
// that it does not claim "https" for an HTTP/2 transport of its own.
// In front of the meter, libraryAuth answers the library's authentication
// chain for sc from the provider's caches.
func (p *Provider) libraryTransport(sc scopeRef) *http.Transport {
	meter := &meterTransport{base: p.transport, rec: p.cfg.Recorder}
	auth := newLibraryAuth(p, sc, meter)
	var http1 http.Protocols
	http1.SetHTTP1(true)
	outer := &http.Transport{Protocols: &http1}
	outer.RegisterProtocol("https", auth)
	outer.RegisterProtocol("http", auth)
	return outer
}
