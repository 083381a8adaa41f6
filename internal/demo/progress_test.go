package demo

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

func jobsIn(states ...string) actionsfake.State {
	var st actionsfake.State
	for _, s := range states {
		st.Jobs = append(st.Jobs, actionsfake.JobState{State: s})
	}
	return st
}

func TestSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		jobs     int
		state    actionsfake.State
		calls    []shoesfake.Call
		line     string
		finished bool
	}{
		{
			name:  "nothing yet",
			jobs:  3,
			line:  "jobs 3 | queued 0 assigned 0 running 0 done 0 | instances up 0 created 0 deleted 0 | 1.5s",
			state: actionsfake.State{},
		},
		{
			name:  "mixed",
			jobs:  7,
			state: jobsIn("queued", "available", "acquired", "assigned", "running", "running", "completed"),
			calls: []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK"), add("r3", "c3", "OK"), add("r4", "", "Internal"), del("c1", "OK")},
			line:  "jobs 7 | queued 3 assigned 1 running 2 done 1 | instances up 2 created 3 deleted 1 | 1.5s",
		},
		{
			name:     "all done",
			jobs:     2,
			state:    jobsIn("completed", "completed"),
			calls:    []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK"), del("c1", "OK"), del("c2", "OK")},
			line:     "jobs 2 | queued 0 assigned 0 running 0 done 2 | instances up 0 created 2 deleted 2 | 1.5s",
			finished: true,
		},
		{
			name:     "canceled is final and shown",
			jobs:     2,
			state:    jobsIn("completed", "canceled"),
			line:     "jobs 2 | queued 0 assigned 0 running 0 done 1 canceled 1 | instances up 0 created 0 deleted 0 | 1.5s",
			finished: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Snapshot(tc.jobs, tc.state, tc.calls, 1500*time.Millisecond)
			if got := p.String(); got != tc.line {
				t.Errorf("line =\n %q\nwant\n %q", got, tc.line)
			}
			if p.Finished() != tc.finished {
				t.Errorf("Finished = %v, want %v", p.Finished(), tc.finished)
			}
		})
	}
}

func TestProgressWriterPlain(t *testing.T) {
	var b strings.Builder
	pw := NewProgressWriter(&b, false, 2*time.Second)
	p := Progress{Jobs: 2}
	now := t0
	step := func(d time.Duration, mutate func(*Progress)) {
		now = now.Add(d)
		if mutate != nil {
			mutate(&p)
		}
		p.Elapsed = now.Sub(t0)
		pw.Update(p, now)
	}
	step(0, nil)                                                   // first: printed
	step(500*time.Millisecond, func(p *Progress) { p.Queued = 1 }) // changed, too soon
	step(2*time.Second, nil)                                       // changed since the last print, interval passed: printed
	step(2*time.Second, nil)                                       // unchanged: not printed, whatever the time
	step(100*time.Millisecond, func(p *Progress) { p.Done = 2 })   // changed, too soon
	pw.Flush(p, now)                                               // flush prints it
	pw.Flush(p, now)                                               // nothing new

	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{
		"jobs 2 | queued 0 assigned 0 running 0 done 0 | instances up 0 created 0 deleted 0 | 0.0s",
		"jobs 2 | queued 1 assigned 0 running 0 done 0 | instances up 0 created 0 deleted 0 | 2.5s",
		"jobs 2 | queued 1 assigned 0 running 0 done 2 | instances up 0 created 0 deleted 0 | 4.6s",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("plain output:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(b.String(), "\r") {
		t.Error("plain output has a carriage return")
	}
}

func TestProgressWriterTTY(t *testing.T) {
	var b strings.Builder
	pw := NewProgressWriter(&b, true, 250*time.Millisecond)
	pw.Status("starting")
	pw.Println("ready")
	p := Progress{Jobs: 1}
	pw.Update(p, t0)
	pw.Update(p, t0.Add(100*time.Millisecond)) // too soon
	p.Elapsed = 300 * time.Millisecond
	pw.Update(p, t0.Add(300*time.Millisecond)) // redrawn even when only the elapsed time moved
	p.Done = 1
	pw.Flush(p, t0.Add(310*time.Millisecond)) // the final state, whatever the interval
	pw.Println("stopping")
	want := "\rstarting\x1b[K" + "\r\x1b[K" + "ready\n" +
		"\r" + "jobs 1 | queued 0 assigned 0 running 0 done 0 | instances up 0 created 0 deleted 0 | 0.0s" + "\x1b[K" +
		"\r" + "jobs 1 | queued 0 assigned 0 running 0 done 0 | instances up 0 created 0 deleted 0 | 0.3s" + "\x1b[K" +
		"\r" + "jobs 1 | queued 0 assigned 0 running 0 done 1 | instances up 0 created 0 deleted 0 | 0.3s" + "\x1b[K\n" +
		"stopping\n"
	if b.String() != want {
		t.Errorf("tty output =\n%q\nwant\n%q", b.String(), want)
	}
}

func TestSettled(t *testing.T) {
	idle := func(name, cloudID string) store.Runner {
		return store.Runner{Name: name, CloudID: cloudID, State: store.StateIdle}
	}
	for _, tc := range []struct {
		name    string
		calls   []shoesfake.Call
		runners []store.Runner
		keep    int
		want    bool
	}{
		{"empty", nil, nil, 0, true},
		{"all deleted", []shoesfake.Call{add("r1", "c1", "OK"), del("c1", "OK")}, nil, 0, true},
		{"instance up", []shoesfake.Call{add("r1", "c1", "OK")}, nil, 0, false},
		{"runner record left", []shoesfake.Call{add("r1", "c1", "OK"), del("c1", "OK")}, []store.Runner{{Name: "r1", CloudID: "c1", State: store.StateDeleting}}, 0, false},
		{"min runners kept idle", []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK"), add("r3", "c3", "OK"), del("c3", "OK")}, []store.Runner{idle("r1", "c1"), idle("r2", "c2")}, 2, true},
		{"min runners not up yet", []shoesfake.Call{add("r1", "c1", "OK")}, []store.Runner{idle("r1", "c1")}, 2, false},
		{"kept runner busy", []shoesfake.Call{add("r1", "c1", "OK")}, []store.Runner{{Name: "r1", CloudID: "c1", State: store.StateBusy}}, 1, false},
		{"an extra instance beside the kept ones", []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK")}, []store.Runner{idle("r1", "c1")}, 1, false},
		{"kept runner's instance is another", []shoesfake.Call{add("r1", "c1", "OK")}, []store.Runner{idle("r1", "c9")}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Settled(tc.calls, tc.runners, tc.keep); got != tc.want {
				t.Errorf("Settled = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	if got, want := Targets(3), []string{"demo-org-1", "demo-org-2", "demo-org-3"}; !slices.Equal(got, want) {
		t.Errorf("Targets(3) = %v, want %v", got, want)
	}
}

// wantValidate checks c.Validate: nil when want is "", else an error
// containing want.
func wantValidate(t *testing.T, c *Config, want string) {
	t.Helper()
	err := c.Validate()
	switch {
	case want == "" && err != nil:
		t.Errorf("Validate = %v, want nil", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("Validate = %v, want an error about %q", err, want)
	}
}

// withEtcd puts a valid demo's state in etcd, then applies then.
func withEtcd(then func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Etcd = &Etcd{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/demo/"}
		c.OpenState = func() (*store.Store, func(), error) { return nil, func() {}, nil }
		if then != nil {
			then(c)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := func() Config {
		return Config{
			Jobs: 1, Targets: 1, Timeout: time.Minute, PluginPath: "/bin/true",
			RunController: func(context.Context, ControllerSetup) error { return nil },
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"new state file", func(c *Config) { c.StateFile = filepath.Join(t.TempDir(), "new.db") }, ""},
		{"no jobs", func(c *Config) { c.Jobs = 0 }, "jobs"},
		{"no targets", func(c *Config) { c.Targets = 0 }, "targets"},
		{"negative duration", func(c *Config) { c.JobDuration = -1 }, "job duration"},
		{"negative latency", func(c *Config) { c.PluginLatency = -1 }, "plugin latency"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"no plugin", func(c *Config) { c.PluginPath = "" }, "plugin path"},
		{"no controller", func(c *Config) { c.RunController = nil }, "RunController"},
		{"existing state file", func(c *Config) { c.StateFile = existing }, "exists"},
		// The state in etcd (--etcd-endpoints).
		{"etcd", withEtcd(nil), ""},
		{"etcd and a state file", withEtcd(func(c *Config) { c.StateFile = filepath.Join(t.TempDir(), "new.db") }), "give either"},
		{"etcd without an opener", withEtcd(func(c *Config) { c.OpenState = nil }), "OpenState: required with Etcd"},
		{"etcd without an endpoint", withEtcd(func(c *Config) { c.Etcd.Endpoints = nil }), "no endpoints"},
		{"etcd prefix without a slash at the end", withEtcd(func(c *Config) { c.Etcd.Prefix = "/demo" }), "must start and end with /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(&c)
			wantValidate(t, &c, tc.want)
			if tc.want == "" && c.SettleTimeout != DefaultSettleTimeout {
				t.Errorf("SettleTimeout = %v, want the default %v", c.SettleTimeout, DefaultSettleTimeout)
			}
		})
	}
}
