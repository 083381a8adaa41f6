package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/demo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// etcdKeys counts the keys under prefix.
func etcdKeys(t *testing.T, c *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count the keys under %s: %v", prefix, err)
	}
	return resp.Count
}

// A demo with its state in etcd (a real etcd server): a burst completes
// with every invariant holding, the records are in etcd under the named
// prefix and nothing in a state file, the demo's replica left, and a
// second demo on the same prefix is refused.
func TestDemoEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client()
	const prefix = "/demo-etcd-test/"
	workDir := filepath.Join(t.TempDir(), "work")
	rep := runInProcessDemo(t, t.TempDir(), "--jobs", "20", "--targets", "2", "--plugin-latency", "50ms",
		"--etcd-endpoints", srv.Endpoint(), "--etcd-prefix", prefix, "--work-dir", workDir)
	if len(rep.Problems()) > 0 || rep.JobsCompleted != 20 || rep.InstancesCreated != 20 || rep.InstancesDeleted != 20 ||
		rep.LeakedInstances != 0 || rep.DuplicateRunners != 0 || rep.ProtocolViolations != 0 {
		t.Errorf("report = %+v (problems %q), want 20 jobs completed, 20 instances created and deleted, nothing leaked", rep, rep.Problems())
	}
	if rep.StateFile != "" {
		t.Errorf("state_file = %q, want none: the state is in etcd", rep.StateFile)
	}
	// Only the logs are left in the work directory: no state file.
	if names := demoWorkDir(t, workDir); strings.Join(names, " ") != "calls.jsonl controller.log" {
		t.Errorf("files left in the work directory: %v, want only calls.jsonl and controller.log", names)
	}
	log, err := os.ReadFile(filepath.Join(workDir, "controller.log"))
	if err != nil || !strings.Contains(string(log), "store=etcd") || !strings.Contains(string(log), "etcd_prefix="+prefix) {
		t.Errorf("the controller did not log its start on etcd %s (err %v)", prefix, err)
	}

	// The records are in etcd: every runner in the history, completed,
	// and no runner record left.
	st, err := store.OpenEtcd(store.EtcdOptions{Client: c, Prefix: prefix + "state/", OwnerID: "test-reader"})
	if err != nil {
		t.Fatal(err)
	}
	wantAllCompleted(t, st, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ids, err := replica.LiveMembers(ctx, c, prefix); err != nil || len(ids) != 0 {
		t.Errorf("live replicas under %s after the demo: %v (err %v), want none: the demo's replica leaves", prefix, ids, err)
	}

	// The prefix holds state now: a second demo on it is refused before
	// it starts, and the state is untouched.
	before := etcdKeys(t, c, prefix)
	tmp := t.TempDir()
	res := runDemoMain(t, tmp, 30*time.Second, "--etcd-endpoints", srv.Endpoint(), "--etcd-prefix", prefix)
	if res.code != exitUsage {
		t.Fatalf("a demo on a prefix in use: exit %d, want 2\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}
	want := "--etcd-prefix (env SHOES_SCALESET_ETCD_PREFIX): " + prefix + " holds "
	if !strings.Contains(res.errOut, want) {
		t.Errorf("stderr = %q, want it to contain %q", res.errOut, want)
	}
	noDemoTempDir(t, tmp)
	if after := etcdKeys(t, c, prefix); after != before {
		t.Errorf("the refused demo changed the prefix: %d keys, was %d", after, before)
	}
}

// Without --etcd-prefix each demo has a new prefix of its own, deleted at
// the end; --etcd-endpoints is read from its variable, as run reads it.
func TestDemoEtcdTemporaryPrefix(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Setenv("SHOES_SCALESET_ETCD_ENDPOINTS", srv.Endpoint())
	res := runDemoMain(t, t.TempDir(), 90*time.Second, "--jobs", "4", "--targets", "2", "--plugin-latency", "50ms",
		"--plugin-mode", "inprocess", "--job-duration", "200ms", "--timeout", "60s")
	if res.code != exitOK {
		t.Fatalf("exit code = %d, want 0\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}
	for _, want := range []string{
		"  state:           etcd " + srv.Endpoint() + ", prefix " + demoEtcdPrefixRoot,
		"(deleted at exit; keep it with --etcd-prefix PREFIX)\n",
		"demo passed: all 4 jobs completed, nothing leaked\n",
	} {
		if !strings.Contains(res.out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.out)
		}
	}
	if n := etcdKeys(t, srv.Client(), demoEtcdPrefixRoot); n != 0 {
		t.Errorf("%d keys left under %s, want 0: the demo deletes a prefix it made up", n, demoEtcdPrefixRoot)
	}
}

func TestDemoEtcdUsageErrors(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.db")
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--etcd-endpoints", "ftp://127.0.0.1:2379"},
			want: `--etcd-endpoints (env SHOES_SCALESET_ETCD_ENDPOINTS): endpoint "ftp://127.0.0.1:2379": scheme must be http or https`},
		{env: map[string]string{"SHOES_SCALESET_ETCD_ENDPOINTS": "127.0.0.1"},
			want: `--etcd-endpoints (env SHOES_SCALESET_ETCD_ENDPOINTS): endpoint "http://127.0.0.1": want host:port`},
		{args: []string{"--etcd-endpoints", "127.0.0.1:1", "--state-file", stateFile},
			want: "--state-file and --etcd-endpoints (env SHOES_SCALESET_ETCD_ENDPOINTS): the state is kept in a file or in etcd; give either"},
		{args: []string{"--etcd-prefix", "/x/"},
			want: "--etcd-prefix (env SHOES_SCALESET_ETCD_PREFIX): is set, but --etcd-endpoints is not"},
		{args: []string{"--etcd-endpoints", "127.0.0.1:1", "--etcd-prefix", "demo"},
			want: `--etcd-prefix (env SHOES_SCALESET_ETCD_PREFIX): must start and end with /, got "demo"`},
		{args: []string{"--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "0s"},
			want: "--etcd-dial-timeout (env SHOES_SCALESET_ETCD_DIAL_TIMEOUT): must not be 0s (default 5s)"},
		{args: []string{"--etcd-endpoints", "127.0.0.1:1", "--etcd-username", "demo"},
			want: "--etcd-username (env SHOES_SCALESET_ETCD_USERNAME): needs --etcd-password (give it in SHOES_SCALESET_ETCD_PASSWORD)"},
		{args: []string{"--etcd-endpoints", "127.0.0.1:1", "--etcd-key-file", stateFile},
			want: "--etcd-cert-file (env SHOES_SCALESET_ETCD_CERT_FILE): needs to be given with --etcd-key-file"},
	} {
		name := strings.Join(tc.args, " ")
		for k, v := range tc.env {
			name += " " + k + "=" + v
		}
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			wantDemoUsageError(t, tc.want, tc.args...)
		})
	}
}

// An etcd out of reach is a runtime failure (exit 1), not bad usage, and
// no demo starts.
func TestDemoEtcdUnreachable(t *testing.T) {
	tmp := t.TempDir()
	res := runDemoMain(t, tmp, 30*time.Second, "--etcd-endpoints", testkit.FreeAddr(t), "--etcd-dial-timeout", "1s")
	if res.code != exitFailure || !strings.Contains(res.errOut, "connect to etcd") {
		t.Fatalf("exit %d, want 1 with \"connect to etcd\"\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}
	noDemoTempDir(t, tmp)
}

// The options the demo gives run with etcd pass run's own validation: run
// keeps the state in etcd under the demo's prefix, as one replica.
func TestDemoRunOptionsValidateEtcd(t *testing.T) {
	dir := t.TempDir()
	o := demoRunOptions(demo.ControllerSetup{
		MyshoesURL: "http://127.0.0.1:1/myshoes", GitHubURL: "http://127.0.0.1:1", AppID: 4242, AppKeyFile: testkit.KeyFile(t, dir),
		PluginPath: cliBinary, PluginArgs: []string{"sim", "plugin"}, PluginPoolSize: 4,
		StateFile: filepath.Join(dir, "state.db"), Listen: "127.0.0.1:0", PollHold: time.Second,
		Etcd:                &demo.Etcd{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/demo-x/", DialTimeout: time.Second},
		RunnerBaseDirectory: filepath.Join(dir, "runners"), MaxRunners: 10, ProvisionConcurrency: 16, HistoryMaxCount: 10000,
		Log: io.Discard,
	})
	rc, err := o.validate(io.Discard)
	if err != nil {
		t.Fatalf("run rejects the demo's etcd options: %v", err)
	}
	if rc.etcd == nil || rc.etcdPrefix != "/demo-x/" || rc.replica.ID != "demo" {
		t.Errorf("run's state: etcd %v, prefix %q, replica %q; want etcd, /demo-x/, demo", rc.etcd != nil, rc.etcdPrefix, rc.replica.ID)
	}
}
