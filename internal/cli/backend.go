package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Where the state lives: the bbolt file (one machine), or etcd, shared by
// replicas of run (issue 13). run and the inspecting commands read the
// same flags.
const (
	backendBolt = "bbolt"
	backendEtcd = "etcd"
)

// backendOptions are the flags that choose and reach the state's backend.
type backendOptions struct {
	Store           string
	EtcdEndpoints   []string
	EtcdPrefix      string
	EtcdCAFile      string
	EtcdCertFile    string
	EtcdKeyFile     string
	EtcdUsername    string
	EtcdPassword    string
	EtcdDialTimeout time.Duration
}

// defaultEtcdPrefix holds one cluster's keys: the members and owners of
// the replicas, and the state under <prefix>state/.
const defaultEtcdPrefix = "/shoes-scaleset/"

func (o *backendOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Store, "store", backendBolt, "where the state lives: bbolt (the --state-file, one machine) or etcd (shared by replicas)")
	f.StringSliceVar(&o.EtcdEndpoints, "etcd-endpoints", nil, "etcd endpoints with --store etcd, comma-separated, e.g. https://10.0.0.1:2379")
	f.StringVar(&o.EtcdPrefix, "etcd-prefix", defaultEtcdPrefix, "key prefix of one cluster of replicas in etcd")
	f.StringVar(&o.EtcdCAFile, "etcd-ca-file", "", "PEM file of the CA certificates that sign etcd's server certificates")
	f.StringVar(&o.EtcdCertFile, "etcd-cert-file", "", "client certificate (PEM) for etcd, with --etcd-key-file")
	f.StringVar(&o.EtcdKeyFile, "etcd-key-file", "", "private key (PEM) of --etcd-cert-file")
	f.StringVar(&o.EtcdUsername, "etcd-username", "", "etcd user, with --etcd-password")
	f.StringVar(&o.EtcdPassword, "etcd-password", "", "password of --etcd-username; give it in the environment, not as a flag")
	f.DurationVar(&o.EtcdDialTimeout, "etcd-dial-timeout", 5*time.Second, "how long connecting to etcd may take")
}

// addEtcdFlags adds the flags that reach etcd, all of addFlags's but
// --store: for a command whose other flags say where etcd is used (state
// migrate). It takes them from addFlags, so both stay the same flags.
func (o *backendOptions) addEtcdFlags(f *pflag.FlagSet) {
	all := pflag.NewFlagSet("backend", pflag.ContinueOnError)
	o.addFlags(all)
	all.VisitAll(func(fl *pflag.Flag) {
		if fl.Name != "store" {
			f.AddFlag(fl)
		}
	})
}

// etcdOnlyFlags are the flags that mean something only with --store etcd.
func etcdOnlyFlags() []string {
	return []string{"etcd-endpoints", "etcd-ca-file", "etcd-cert-file", "etcd-key-file", "etcd-username", "etcd-password"}
}

// validate checks the backend flags and, with --store etcd, returns the
// etcd client's configuration (nil with bbolt). Errors name the flag.
func (o *backendOptions) validate(e *envBinding) (*clientv3.Config, error) {
	switch o.Store {
	case backendBolt:
		for _, name := range etcdOnlyFlags() {
			if f := e.flags.Lookup(name); f != nil && f.Changed {
				return nil, e.flagError(name, "is set, but --store is %s; give --store etcd to keep the state in etcd", backendBolt)
			}
		}
		return nil, nil
	case backendEtcd:
	default:
		return nil, e.flagError("store", "must be %s or %s, got %q", backendBolt, backendEtcd, o.Store)
	}
	if len(o.EtcdEndpoints) == 0 {
		return nil, e.flagError("etcd-endpoints", "required with --store etcd")
	}
	for _, ep := range o.EtcdEndpoints {
		if err := validEndpoint(ep); err != nil {
			return nil, e.flagError("etcd-endpoints", "%v", err)
		}
	}
	if !strings.HasPrefix(o.EtcdPrefix, "/") || !strings.HasSuffix(o.EtcdPrefix, "/") {
		return nil, e.flagError("etcd-prefix", "must start and end with /, got %q", o.EtcdPrefix)
	}
	if o.EtcdDialTimeout <= 0 {
		return nil, e.flagError("etcd-dial-timeout", "must be positive")
	}
	cfg := &clientv3.Config{
		Endpoints:   o.EtcdEndpoints,
		DialTimeout: o.EtcdDialTimeout,
		// The client's own logs go nowhere: ours say what failed, and
		// zap's would bypass slog (and --log-format).
		Logger: zap.NewNop(),
	}
	switch {
	case o.EtcdPassword != "" && o.EtcdUsername == "":
		return nil, e.flagError("etcd-password", "needs --etcd-username")
	case o.EtcdUsername != "" && o.EtcdPassword == "":
		return nil, e.flagError("etcd-username", "needs --etcd-password (give it in %s)", envName("etcd-password"))
	}
	cfg.Username, cfg.Password = o.EtcdUsername, o.EtcdPassword
	tlsCfg, err := o.tlsConfig(e)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tlsCfg
	return cfg, nil
}

// tlsConfig builds the TLS configuration of the etcd client from the
// certificate flags; nil when none is given and no endpoint is https.
func (o *backendOptions) tlsConfig(e *envBinding) (*tls.Config, error) {
	if (o.EtcdCertFile == "") != (o.EtcdKeyFile == "") {
		if o.EtcdCertFile == "" {
			return nil, e.flagError("etcd-cert-file", "needs to be given with --etcd-key-file")
		}
		return nil, e.flagError("etcd-key-file", "needs to be given with --etcd-cert-file")
	}
	https := false
	for _, ep := range o.EtcdEndpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if o.EtcdCAFile == "" && o.EtcdCertFile == "" && !https {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.EtcdCAFile != "" {
		pem, err := os.ReadFile(o.EtcdCAFile)
		if err != nil {
			return nil, e.flagError("etcd-ca-file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, e.flagError("etcd-ca-file", "no PEM certificate in %s", o.EtcdCAFile)
		}
		cfg.RootCAs = pool
	}
	if o.EtcdCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.EtcdCertFile, o.EtcdKeyFile)
		if err != nil {
			return nil, e.flagError("etcd-cert-file", "load the client certificate and key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// validEndpoint accepts host:port, or an http(s) URL with a host and
// nothing after it.
func validEndpoint(ep string) error {
	if !strings.Contains(ep, "://") {
		ep = "http://" + ep
	}
	u, err := url.Parse(ep)
	switch {
	case err != nil:
		return fmt.Errorf("endpoint %q: %w", ep, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("endpoint %q: scheme must be http or https", ep)
	case u.Host == "" || u.Port() == "":
		return fmt.Errorf("endpoint %q: want host:port", ep)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("endpoint %q: no path expected", ep)
	}
	return nil
}

// dialEtcd connects to etcd and checks that it answers, within the dial
// timeout: a replica that cannot reach etcd at start exits 1 (a restart
// may help), it does not wait forever.
func dialEtcd(cfg *clientv3.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(*cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if _, err := c.Get(ctx, "health-check-of-shoes-scaleset", clientv3.WithCountOnly()); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connect to etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return c, nil
}

// etcdStatePrefix is where the state lives under a cluster's prefix; the
// replicas' members, owners and leader are beside it.
func etcdStatePrefix(prefix string) string { return prefix + "state/" }

// etcdStore opens the state under the cluster's prefix. fencer is the
// replica's ownership (run), or nil for a reader.
func etcdStore(c *clientv3.Client, prefix, ownerID string, fencer store.Fencer, opts store.Options) (*store.Store, error) {
	return store.OpenEtcd(store.EtcdOptions{
		Client:          c,
		Prefix:          etcdStatePrefix(prefix),
		OwnerID:         ownerID,
		HistoryMaxAge:   opts.HistoryMaxAge,
		HistoryMaxCount: opts.HistoryMaxCount,
		Fencer:          fencer,
	})
}

// replicaOptions are run's flags for its place among the replicas.
type replicaOptions struct {
	ID        string
	TTL       time.Duration
	JoinDelay time.Duration
}

func (o *replicaOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.ID, "replica-id", "", "this replica's name among the replicas sharing etcd; unique (empty: the host name)")
	f.DurationVar(&o.TTL, "replica-ttl", replica.DefaultConfig().TTL, "lease TTL with --store etcd: a dead replica's targets move after it (whole seconds)")
	f.DurationVar(&o.JoinDelay, "replica-join-delay", 30*time.Second, "a replica that joins gets its share of the targets this long after it joined, so that one coming and going does not move targets back and forth")
}

// validate checks the replica flags (meaningful with --store etcd only).
func (o *replicaOptions) validate(e *envBinding) error {
	if o.ID == "" {
		host, err := os.Hostname()
		if err != nil {
			return e.flagError("replica-id", "no host name to default to: %v", err)
		}
		o.ID = host
	}
	if strings.TrimSpace(o.ID) == "" || strings.ContainsAny(o.ID, "/\x00") {
		return e.flagError("replica-id", "must be a non-empty name without /, got %q", o.ID)
	}
	if err := replica.CheckTTL(o.TTL); err != nil {
		return e.flagError("replica-ttl", "%v", err)
	}
	if o.JoinDelay < 0 {
		return e.flagError("replica-join-delay", "must not be negative")
	}
	return nil
}

// runState is where run keeps its state: the bbolt file, or etcd with
// this replica's lease, membership and ownership of targets.
type runState struct {
	store   *store.Store
	client  *clientv3.Client   // nil on bbolt
	replica *replica.Replica   // nil on bbolt
	owners  *replica.Ownership // nil on bbolt
	log     *slog.Logger
	left    bool
}

// openRunState opens the bbolt file, or connects to etcd and joins the
// replicas. A live replica with the same --replica-id (this one's previous
// process, killed a moment ago) is waited for, for two TTLs at most.
func openRunState(ctx context.Context, rc runConfig, log *slog.Logger) (*runState, error) {
	if rc.etcd == nil {
		st, err := store.Open(rc.store)
		if err != nil {
			return nil, err
		}
		return &runState{store: st, log: log}, nil
	}
	c, err := dialEtcd(rc.etcd)
	if err != nil {
		return nil, err
	}
	cfg := replica.Config{Client: c, Prefix: rc.etcdPrefix, ID: rc.replica.ID, TTL: rc.replica.TTL, Logger: log.With("component", "replica")}
	var r *replica.Replica
	deadline := time.Now().Add(2*rc.replica.TTL + time.Second)
	for {
		r, err = replica.Join(ctx, cfg)
		if !errors.Is(err, replica.ErrIDInUse) || time.Now().After(deadline) {
			break
		}
		log.Warn("a live replica has this --replica-id; waiting for its lease to expire (a previous process of this replica?)", "replica", rc.replica.ID)
		select {
		case <-ctx.Done():
			_ = c.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("join the replicas in etcd: %w", err)
	}
	rs := &runState{client: c, replica: r, owners: replica.NewOwnership(r, rc.replica.JoinDelay), log: log}
	rs.store, err = etcdStore(c, rc.etcdPrefix, r.ID(), r, rc.store)
	if err != nil {
		rs.close()
		return nil, err
	}
	return rs, nil
}

// run keeps the replica's lease renewed and its ownership watched until
// ctx ends; nothing on bbolt. It must outlive the controller's shutdown,
// whose writes are fenced on the lease.
func (rs *runState) run(ctx context.Context) {
	if rs.replica == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rs.owners.Watch(ctx)
	}()
	_ = rs.replica.Run(ctx)
	<-done
}

// leader reports whether this process does the chores of the whole
// state (history pruning): always on bbolt, the leader with replicas.
func (rs *runState) leader() bool { return rs.owners == nil || rs.owners.Leader() }

// leave revokes the replica's lease, so the others take its targets over
// at once rather than after the TTL. Called once the controller has
// closed its sessions: a clean hand-over.
func (rs *runState) leave() {
	if rs.replica == nil || rs.left {
		return
	}
	rs.left = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rs.replica.Leave(ctx); err != nil {
		rs.log.Warn("leave the replicas; the others take the targets over after the TTL", "err", err)
		return
	}
	rs.log.Info("left the replicas", "replica", rs.replica.ID())
}

// close leaves the replicas if that has not happened, and closes the
// store and the etcd client.
func (rs *runState) close() {
	rs.leave()
	if rs.store != nil {
		_ = rs.store.Close()
	}
	if rs.client != nil {
		_ = rs.client.Close()
	}
}

// replicaReadiness is the controller's readiness, and with replicas also
// the lease's: past its safe deadline a replica has stopped acting on its
// targets (etcd is out of reach), which the controller alone cannot see
// once its workers are stopped.
type replicaReadiness struct {
	ctrl    httpapi.Readiness
	replica *replica.Replica // nil on bbolt
}

func (r replicaReadiness) Ready() (bool, []controller.NotReady) {
	ok, why := r.ctrl.Ready()
	if r.replica != nil && !r.replica.Safe() {
		ok = false
		why = append(why, controller.NotReady{Reason: "replica " + r.replica.ID() +
			": past the lease's safe deadline (etcd out of reach?); its targets go to the other replicas"})
	}
	return ok, why
}
