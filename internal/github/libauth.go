package github

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// libraryAuth answers the scaleset library's own authentication chain from
// the provider's caches. Left to itself, each library client (one per
// scope) fetches an installation token (POST /app/installations/{id}/
// access_tokens), a registration token and an Actions service admin
// connection (POST /actions/runner-registration), while the provider does
// the same for the message sessions: six REST calls per target at start,
// and the installation token again for every scope of one installation.
// With this in front of the library's transport, a scope costs one
// registration token and one runner-registration (the provider's adminConn,
// renewed before it expires), and an installation one access token (its
// ghinstallation transport), however many clients ask. The URL shapes are
// those of actions/scaleset v0.2.0 (client.go: fetchAccessToken,
// getRunnerRegistrationToken, getActionsServiceAdminConnection).
//
// Any other request goes to next unchanged.
type libraryAuth struct {
	p    *Provider
	sc   scopeRef
	next http.RoundTripper
	// standIn is the registration token handed to the library in place of
	// a real one; the runner-registration that presents it is answered
	// from the provider's admin connection of sc.
	standIn string
}

func newLibraryAuth(p *Provider, sc scopeRef, next http.RoundTripper) *libraryAuth {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &libraryAuth{p: p, sc: sc, next: next, standIn: "shoes-scaleset-stand-in-" + hex.EncodeToString(b)}
}

func (a *libraryAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !a.isAPI(req) {
		return a.next.RoundTrip(req)
	}
	path := req.URL.Path
	switch {
	case strings.HasSuffix(path, "/actions/runners/registration-token"):
		drain(req)
		// The library hands it straight to runner-registration, which
		// is answered below: no real registration token is needed.
		return jsonResponse(req, http.StatusCreated, map[string]any{
			"token": a.standIn, "expires_at": a.p.now().Add(time.Hour).UTC(),
		}), nil
	case strings.HasSuffix(path, "/actions/runner-registration") && req.Header.Get("Authorization") == "RemoteAuth "+a.standIn:
		drain(req)
		conn, err := a.p.adminConn(req.Context(), a.sc)
		if err != nil {
			return errorResponse(req, err)
		}
		return jsonResponse(req, http.StatusOK, map[string]string{"url": conn.url, "token": conn.token}), nil
	case a.p.key != nil && strings.HasSuffix(path, "/access_tokens"):
		id, ok := installationOf(path)
		if !ok {
			return a.next.RoundTrip(req)
		}
		drain(req)
		tok, err := a.p.installationTransport(id).Token(withScope(req.Context(), appScope))
		if err != nil {
			return errorResponse(req, a.p.installationTokenError(a.sc, id, err))
		}
		return jsonResponse(req, http.StatusCreated, map[string]any{"token": tok, "expires_at": a.p.now().Add(time.Hour).UTC()}), nil
	}
	return a.next.RoundTrip(req)
}

// isAPI reports whether req goes to the provider's GitHub API.
func (a *libraryAuth) isAPI(req *http.Request) bool {
	return strings.HasPrefix(req.URL.Scheme+"://"+req.URL.Host+req.URL.Path, a.p.api+"/")
}

// installationOf returns the ID in ".../app/installations/{id}/access_tokens".
func installationOf(path string) (int64, bool) {
	rest, ok := strings.CutSuffix(path, "/access_tokens")
	if !ok {
		return 0, false
	}
	i := strings.LastIndex(rest, "/app/installations/")
	if i < 0 {
		return 0, false
	}
	id, err := strconv.ParseInt(rest[i+len("/app/installations/"):], 10, 64)
	return id, err == nil && id > 0
}

func drain(req *http.Request) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, maxResponseBody))
		_ = req.Body.Close()
	}
}

func jsonResponse(req *http.Request, status int, v any) *http.Response {
	b, _ := json.Marshal(v)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Request:       req,
	}
}

// errorResponse hands the library the answer behind err when there was
// one (its status and message, so that its error says what GitHub said),
// else err itself, as a transport error.
func errorResponse(req *http.Request, err error) (*http.Response, error) {
	var se *StatusError
	if !errors.As(err, &se) {
		return nil, err
	}
	return jsonResponse(req, se.StatusCode, map[string]string{"message": se.Message}), nil
}
