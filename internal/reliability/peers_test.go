package reliability

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// otherOwner holds a message session on a scale set through the real API,
// as another process (another shoes-scaleset, another listener) would.
type otherOwner struct {
	t     *testing.T
	p     *github.Provider
	scope string
	ssID  int
	sess  *github.Session
}

// holdSession gets or creates the scale set the daemon will use for scope
// (same name and labels) and opens a session on it owned by owner.
func (s *world) holdSession(scope, owner string) *otherOwner {
	s.t.Helper()
	p := s.gitHubAdmin()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := github.ScaleSetName("myshoes", scope)
	rs, _, err := p.GetOrCreateScaleSet(ctx, scope, scaleset.DefaultRunnerGroup, name, github.ScaleSetLabels(name, nil))
	if err != nil {
		s.t.Fatalf("get or create scale set %s: %v", name, err)
	}
	sess, err := p.CreateSession(ctx, scope, rs.ID, owner)
	if err != nil {
		s.t.Fatalf("create session on %s as %s: %v", name, owner, err)
	}
	o := &otherOwner{t: s.t, p: p, scope: scope, ssID: rs.ID, sess: sess}
	s.t.Cleanup(func() { o.release() })
	return o
}

// gitHubAdmin is a GitHub client of the sim's app, to act on GitHub as
// someone else would (another listener, an admin).
func (s *world) gitHubAdmin() *github.Provider {
	s.t.Helper()
	id, err := strconv.ParseInt(s.sim.AppID, 10, 64)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := github.New(github.Config{URL: s.sim.GitHubURL, AppID: id, PrivateKeyPEM: appKey(s.t), RetryMax: 2, RetryWaitMax: 200 * time.Millisecond})
	if err != nil {
		s.t.Fatalf("github provider: %v", err)
	}
	return p
}

// release deletes the session; it is idempotent.
func (o *otherOwner) release() {
	if o.sess == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := o.sess.Close(ctx); err != nil {
		o.t.Errorf("delete the other owner's session: %v", err)
	}
	o.sess = nil
}

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics parses the Prometheus text format (no exemplars, no
// timestamps needed).
func parseMetrics(t *testing.T, text string) []sample {
	t.Helper()
	var out []sample
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var sm sample
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			sm.name = line[:i]
			j := strings.LastIndex(line, "}")
			if j < i {
				t.Fatalf("metrics line %q: unbalanced braces", line)
			}
			sm.labels = parseLabels(line[i+1 : j])
			rest = strings.TrimSpace(line[j+1:])
		} else {
			f := strings.Fields(line)
			sm.name, rest = f[0], strings.Join(f[1:], " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			t.Fatalf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: value: %v", line, err)
		}
		sm.value = v
		out = append(out, sm)
	}
	return out
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, m := range labelRE.FindAllStringSubmatch(s, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// sum adds the values of the series named name whose labels include want.
func sum(samples []sample, name string, want map[string]string) (float64, int) {
	total, n := 0.0, 0
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		total += s.value
		n++
	}
	return total, n
}

// metricNames returns the shoes_scaleset_* metric names the metrics
// package defines, read from its source.
func metricNames(t *testing.T) []string {
	t.Helper()
	out := testkit.GrepSource(t, filepath.Join(moduleRoot, "internal", "metrics"), regexp.MustCompile(`"(shoes_scaleset_[a-z0-9_]+)"`))
	if len(out) < 10 {
		t.Fatalf("found only %d metric names in internal/metrics: the pattern is out of date", len(out))
	}
	return out
}
