package etcdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestServerSurvivesKillAndRestart: a value written before a kill -9 is
// read back after the restart, on the same endpoint.
func TestServerSurvivesKillAndRestart(t *testing.T) {
	s := Start(t)
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	endpoint := s.Endpoint()
	s.Restart()
	if s.Endpoint() != endpoint {
		t.Fatalf("endpoint %s after the restart, was %s", s.Endpoint(), endpoint)
	}
	r, err := s.Client().Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("after the restart: %v %v", r, err)
	}
}

// TestProductDoesNotLinkTheServer: the etcd server is for the tests; the
// shoes-scaleset binary must not carry it.
func TestProductDoesNotLinkTheServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/shoes-scaleset/shoes-scaleset/cmd/shoes-scaleset").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list printed %d packages: not the binary's dependencies", len(deps))
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "go.etcd.io/etcd/server/") || strings.HasPrefix(p, "go.etcd.io/raft/") {
			t.Errorf("the binary links %s", p)
		}
	}
}

// TestProxyCutAndHeal: a client through the proxy works, fails while the
// proxy is cut, and works again once healed.
func TestProxyCutAndHeal(t *testing.T) {
	s := Start(t)
	p := NewProxy(t, strings.TrimPrefix(s.Endpoint(), "http://"))
	c := NewClient(t, "http://"+p.Addr())
	put := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		_, err := c.Put(ctx, "k", "v")
		return err
	}
	if err := put(10 * time.Second); err != nil {
		t.Fatalf("put through the proxy: %v", err)
	}
	p.Cut()
	if err := put(500 * time.Millisecond); err == nil {
		t.Fatal("a put went through a cut proxy")
	}
	p.Heal()
	testkit.WaitFor(t, "a put after the heal", 20*time.Second, func() (bool, string) {
		err := put(time.Second)
		return err == nil, fmt.Sprint(err)
	})
}
