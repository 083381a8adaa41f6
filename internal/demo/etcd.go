package demo

import (
	"strings"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Etcd is the etcd a demo keeps its state in, instead of a bbolt file:
// run's --etcd-* settings, which the controller gets as they are
// (ControllerSetup.Etcd). The demo itself holds no etcd client (only
// internal/store and the command do): it reads the state back through
// Config.OpenState.
type Etcd struct {
	Endpoints []string
	// Prefix is run's --etcd-prefix: this demo's own, holding no key when
	// the demo starts. The state is under Prefix + "state/".
	Prefix string
	// CAFile, CertFile and KeyFile are PEM files, as for run.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to etcd; the password is a
	// secret and is never printed.
	Username, Password string
	DialTimeout        time.Duration
	// Kept says that the prefix outlives the demo (the user named it);
	// else the caller deletes it after the run, as a temporary state file
	// is.
	Kept bool
}

// validate reports the first invalid field. The command checked the
// settings already (run's own checks); this guards other callers.
func (e *Etcd) validate() error {
	switch {
	case len(e.Endpoints) == 0:
		return setting.Invalid("Etcd", "etcd: no endpoints")
	case !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/"):
		return setting.Invalid("Etcd", "etcd prefix %q: must start and end with /", e.Prefix)
	}
	return nil
}

// describe says where the state is, for the demo's header: never the
// password.
func (e *Etcd) describe() string {
	where := "etcd " + strings.Join(e.Endpoints, ",") + ", prefix " + e.Prefix
	if e.Kept {
		return where + " (kept: shoes-scaleset runners history --store etcd --etcd-endpoints " +
			strings.Join(e.Endpoints, ",") + " --etcd-prefix " + e.Prefix + ")"
	}
	return where + " (deleted at exit; keep it with --etcd-prefix PREFIX)"
}

// StateOpener opens the state the stopped controller kept, read-only;
// close releases what it opened.
type StateOpener func() (st *store.Store, close func(), err error)

// openStateFile opens the bbolt state file read-only.
func openStateFile(path string) StateOpener {
	return func() (*store.Store, func(), error) {
		st, err := store.Open(store.Options{Path: path, ReadOnly: true})
		if err != nil {
			return nil, nil, err
		}
		return st, func() { _ = st.Close() }, nil
	}
}
