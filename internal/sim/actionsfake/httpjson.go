package actionsfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const maxBodyBytes = 1 << 20

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// actionsError is the error body of the Actions service and the broker
// (a serialized .NET exception; see exceptions.go for the type names).
type actionsError struct {
	Message   string `json:"message"`
	TypeName  string `json:"typeName"`
	TypeKey   string `json:"typeKey"`
	ErrorCode int    `json:"errorCode"`
	EventID   int    `json:"eventId"`
}

func newActionsError(typeName, format string, args ...any) actionsError {
	return actionsError{Message: fmt.Sprintf(format, args...), TypeName: typeName, TypeKey: typeKey(typeName), EventID: 3000}
}

func writeActionsError(w http.ResponseWriter, status int, typeName, format string, args ...any) {
	writeJSON(w, status, newActionsError(typeName, format, args...))
}

// githubError is the error body of the GitHub REST API.
type githubError struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url,omitempty"`
}

func writeGitHubError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, githubError{Message: fmt.Sprintf(format, args...), DocumentationURL: "https://docs.github.com/rest"})
}

// authToken returns the credential after the given scheme ("Bearer", "RemoteAuth"), or "".
func authToken(r *http.Request, scheme string) string {
	h := r.Header.Get("Authorization")
	prefix, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(prefix, scheme) {
		return ""
	}
	return strings.TrimSpace(rest)
}

func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
