package cli

// `shoes-scaleset state migrate`: moves the state between one machine's
// bbolt file and etcd, where replicas share it (issue 13). It copies a
// stopped daemon's state once, into an empty store, and checks the copy.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// migrateLockTimeout bounds the wait for a state file's lock. A running
// daemon holds its file for as long as it runs: waiting longer would
// only delay the error that says to stop it.
const migrateLockTimeout = time.Second

// stateSide is one side of a migration: etcd, or a bbolt file.
type stateSide struct {
	etcd bool
	path string // the bbolt file; "" for etcd
}

func (s stateSide) String() string {
	if s.etcd {
		return backendEtcd
	}
	return backendBolt + ":" + s.path
}

type migrateOptions struct {
	From    string
	To      string
	backend backendOptions
	env     *envBinding
}

func newStateCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Move the state between the bbolt file and etcd",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStateMigrateCmd(s, lookup))
	return cmd
}

func newStateMigrateCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Copy a stopped daemon's state file into etcd, or etcd into a new state file",
		Long: `Copy the whole state (scale sets, sessions, runners, history and what was
learned of the plugin's cloud IDs) from a stopped daemon's bbolt state file
into etcd, to go from one machine to replicas (--from bbolt:PATH --to etcd),
or from etcd into a new state file, to go back (--from etcd --to bbolt:PATH).
etcd is reached with the --etcd-* flags; the state is under
<--etcd-prefix>state/.

Stop every daemon first: a state file a running daemon holds is refused, and
so is etcd while replicas own targets under the prefix. The destination must
be empty. The copy is read back and compared with the source record by
record before the command succeeds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runStateMigrate(cmd.Context(), s, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.From, "from", "", "where the state is: bbolt:PATH (a stopped daemon's state file) or etcd")
	f.StringVar(&opts.To, "to", "", "where to copy it: etcd, or bbolt:PATH (a new state file)")
	opts.backend.addEtcdFlags(f)
	opts.env = newEnvBinding(f, nil, lookup)
	return cmd
}

// migratePlan is what the flags ask for: the two sides, and how to
// reach etcd.
type migratePlan struct {
	from, to stateSide
	etcd     *clientv3.Config
}

// validate checks the flags: exactly one side is etcd, and etcd's flags
// are complete.
func (o *migrateOptions) validate() (migratePlan, error) {
	from, err := parseStateSide(o.env, "from", o.From)
	if err != nil {
		return migratePlan{}, err
	}
	to, err := parseStateSide(o.env, "to", o.To)
	if err != nil {
		return migratePlan{}, err
	}
	if from.etcd == to.etcd {
		both := "bbolt files"
		if from.etcd {
			both = "etcd"
		}
		return migratePlan{}, usageErrorf("--from (env %s) and --to (env %s): both are %s; one must be etcd and the other bbolt:PATH",
			strings.Join(o.env.envNames("from"), " or "), strings.Join(o.env.envNames("to"), " or "), both)
	}
	if len(o.backend.EtcdEndpoints) == 0 {
		side := "--to"
		if from.etcd {
			side = "--from"
		}
		return migratePlan{}, o.env.flagError("etcd-endpoints", "required: %s is etcd", side)
	}
	o.backend.Store = backendEtcd
	cfg, err := o.backend.validate(o.env)
	if err != nil {
		return migratePlan{}, err
	}
	return migratePlan{from: from, to: to, etcd: cfg}, nil
}

// parseStateSide reads --from or --to: bbolt:PATH or etcd.
func parseStateSide(e *envBinding, flag, v string) (stateSide, error) {
	if v == backendEtcd {
		return stateSide{etcd: true}, nil
	}
	path, ok := strings.CutPrefix(v, backendBolt+":")
	switch {
	case v == "":
		return stateSide{}, e.flagError(flag, "required: bbolt:PATH or etcd")
	case !ok || path == "":
		return stateSide{}, e.flagError(flag, "must be bbolt:PATH or etcd, got %q", v)
	}
	return stateSide{path: path}, nil
}

func runStateMigrate(ctx context.Context, s streams, o *migrateOptions) error {
	plan, err := o.validate()
	if err != nil {
		return err
	}
	from, to := plan.from, plan.to
	// The source file is opened before etcd is reached: a daemon still
	// holding it is the likeliest mistake, and nothing is touched yet.
	var src, dst *store.Store
	if !from.etcd {
		if src, err = openSourceFile(o.env, from.path); err != nil {
			return err
		}
		defer src.Close()
	}
	c, err := dialEtcd(plan.etcd)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := checkNoReplicas(ctx, c, o.backend.EtcdPrefix); err != nil {
		return err
	}
	inEtcd, err := etcdStore(c, o.backend.EtcdPrefix, "state-migrate", nil, store.DefaultOptions())
	if err != nil {
		return err
	}
	if from.etcd {
		src = inEtcd
		if dst, err = openDestinationFile(o.env, to.path); err != nil {
			return err
		}
		defer dst.Close()
	} else {
		dst = inEtcd
	}
	return copyAndVerify(s, o.backend.EtcdPrefix, from, to, src, dst)
}

// copyAndVerify copies src into dst, reads the copy back and says what
// it did. A copy that failed half-way or differs must be cleared by hand.
func copyAndVerify(s streams, prefix string, from, to stateSide, src, dst *store.Store) error {
	counts, err := store.Copy(dst, src)
	switch {
	case errors.Is(err, store.ErrNotEmpty):
		return fmt.Errorf("migrate the state: %w; a migration copies into an empty store only", err)
	case err != nil:
		return fmt.Errorf("migrate the state: %w; %s", err, clearHint(prefix, to))
	}
	fmt.Fprintf(s.Out, "copied %s to %s: scale sets %d, sessions %d, runners %d, history %d, meta %d\n",
		describeSide(prefix, from), describeSide(prefix, to), counts.ScaleSets, counts.Sessions, counts.Runners, counts.History, counts.Meta)
	if err := store.Verify(dst, src); err != nil {
		return fmt.Errorf("migrate the state: %w; %s", err, clearHint(prefix, to))
	}
	fmt.Fprintln(s.Out, "verified: the copy matches the source record by record")
	if to.etcd {
		fmt.Fprintf(s.Out, "next: start the replicas with --store etcd --etcd-prefix %s\n", prefix)
	} else {
		fmt.Fprintf(s.Out, "next: start shoes-scaleset run with --state-file %s\n", to.path)
	}
	return nil
}

// openSourceFile opens the state file to copy, read-only. A file a
// running daemon holds is refused with the store's ErrLocked: its state
// would change under the copy, and the daemon would go on alongside the
// replicas.
func openSourceFile(e *envBinding, path string) (*store.Store, error) {
	st, err := store.Open(store.Options{Path: path, ReadOnly: true, LockTimeout: migrateLockTimeout})
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("%w; stop the daemon before migrating its state", err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, e.flagError("from", "%v", err)
	}
	return st, err
}

// openDestinationFile opens (creates) the state file to copy into.
func openDestinationFile(e *envBinding, path string) (*store.Store, error) {
	st, err := store.Open(store.Options{Path: path, LockTimeout: migrateLockTimeout})
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("%w; migrate into a new state file that no daemon uses", err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, e.flagError("to", "%v", err)
	}
	return st, err
}

// checkNoReplicas refuses etcd while replicas are live under prefix: they
// would change the state under the copy, and serve the targets alongside
// the daemon that gets the state. A stopped replica leaves at once, a
// killed one after --replica-ttl.
func checkNoReplicas(ctx context.Context, c *clientv3.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ids, err := replica.LiveMembers(ctx, c, prefix)
	if err != nil {
		return fmt.Errorf("migrate the state: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	return fmt.Errorf("migrate the state: replicas %s are live under --etcd-prefix %s; stop every `shoes-scaleset run --store etcd` of this prefix first",
		strings.Join(ids, ", "), prefix)
}

// describeSide names a side for the output.
func describeSide(prefix string, s stateSide) string {
	if s.etcd {
		return "etcd " + etcdStatePrefix(prefix)
	}
	return s.String()
}

// clearHint says how to empty the destination after a failed copy, which
// may have left part of the state there: the next try needs it empty.
func clearHint(prefix string, to stateSide) string {
	if to.etcd {
		return fmt.Sprintf("etcd may hold part of the copy: delete it (etcdctl del --prefix %s) before migrating again", etcdStatePrefix(prefix))
	}
	return fmt.Sprintf("%s may hold part of the copy: remove the file before migrating again", to.path)
}
