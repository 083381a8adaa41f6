package demo

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

func TestConfigValidateEtcd(t *testing.T) {
	opener := func() (*store.Store, func(), error) { return nil, func() {}, nil }
	good := func() Config {
		return Config{
			Jobs: 1, Targets: 1, Timeout: time.Minute, PluginPath: "/bin/true",
			RunController: func(context.Context, ControllerSetup) error { return nil },
			Etcd:          &Etcd{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/demo/"},
			OpenState:     opener,
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"and a state file", func(c *Config) { c.StateFile = filepath.Join(t.TempDir(), "new.db") }, "give either"},
		{"no opener", func(c *Config) { c.OpenState = nil }, "OpenState: required with Etcd"},
		{"no endpoint", func(c *Config) { c.Etcd.Endpoints = nil }, "no endpoints"},
		{"prefix without a slash at the end", func(c *Config) { c.Etcd.Prefix = "/demo" }, "must start and end with /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(&c)
			wantValidate(t, &c, tc.want)
		})
	}
}

// The header line says where the state is, and how to keep or read it,
// never with the password.
func TestEtcdDescribe(t *testing.T) {
	e := &Etcd{Endpoints: []string{"http://127.0.0.1:2379", "http://127.0.0.1:2380"}, Prefix: "/demo/", Username: "u", Password: "s3cret"}
	got := e.describe()
	if want := "etcd http://127.0.0.1:2379,http://127.0.0.1:2380, prefix /demo/ (deleted at exit; keep it with --etcd-prefix PREFIX)"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
	e.Kept = true
	got = e.describe()
	if want := "(kept: shoes-scaleset runners history --store etcd --etcd-endpoints http://127.0.0.1:2379,http://127.0.0.1:2380 --etcd-prefix /demo/)"; !strings.HasSuffix(got, want) {
		t.Errorf("describe = %q, want it to end with %q", got, want)
	}
	if strings.Contains(got, "s3cret") {
		t.Errorf("describe = %q: it shows the password", got)
	}
}
