package cli

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
)

// newAPI builds the handler of the local API with a token made for this
// start. When the API is served (--listen), the token is written to
// <state file>.api-token, mode 0600, before anything serves, for
// `runners rm`; remove deletes that file and is called on exit.
func newAPI(o *runOptions, deps httpapi.Deps, log *slog.Logger) (h http.Handler, remove func(), err error) {
	token, err := httpapi.NewToken()
	if err != nil {
		return nil, nil, err
	}
	h, err = httpapi.NewHandler(deps, httpapi.Config{Listen: o.Listen, Token: token, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("local api: %w", err)
	}
	if o.Listen == "" {
		return h, func() {}, nil
	}
	path := httpapi.TokenFile(o.StateFile)
	if err := httpapi.WriteTokenFile(path, token); err != nil {
		return nil, nil, err
	}
	return h, func() {
		if err := httpapi.RemoveTokenFile(path); err != nil {
			log.Warn("remove the API token file", "err", err)
		}
	}, nil
}
