package github

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestOneAuthChainPerScope: three scopes of one installation, each with
// its scale set (the library's calls), a message session (ours) and a JIT
// config (the library's again), cost one installation token in all, and
// one registration token and one runner-registration per scope: the
// library's own chain is answered from the provider's caches.
func TestOneAuthChainPerScope(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f)
	ctx := testCtx(t)
	scopes := []string{"acme", "acme/widgets", "acme/gadgets"}
	for i, scope := range scopes {
		name := fmt.Sprintf("shoes-%d", i)
		id := newScaleSet(t, p, scope, name)
		sess, err := p.CreateSession(ctx, scope, id, "host-1")
		if err != nil {
			t.Fatalf("%s: CreateSession: %v", scope, err)
		}
		if _, err := p.GenerateJITConfig(ctx, scope, id, "myshoes-"+name, "_work"); err != nil {
			t.Fatalf("%s: GenerateJITConfig: %v", scope, err)
		}
		if err := sess.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count("POST", f.accessTokensPath(t, "acme")); got != 1 {
		t.Errorf("access_tokens called %d times for one installation of 3 scopes, want 1", got)
	}
	if got := f.count("POST", registrationPath); got != len(scopes) {
		t.Errorf("runner-registration called %d times for %d scopes, want one each", got, len(scopes))
	}
	regTokens := 0
	f.mu.Lock()
	for _, r := range f.seen {
		if r.method == "POST" && strings.HasSuffix(r.path, "/actions/runners/registration-token") {
			regTokens++
		}
	}
	f.mu.Unlock()
	if regTokens != len(scopes) {
		t.Errorf("registration-token called %d times for %d scopes, want one each", regTokens, len(scopes))
	}
}

// TestIdleLibraryClientDropped: a scope's library client unused for
// clientIdleTimeout is dropped, so idle targets do not keep one each, and
// the next call builds another without a REST call: its authentication
// chain is answered from the provider's caches.
func TestIdleLibraryClientDropped(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f)
	clock := testkit.NewClock(time.Now())
	p.now = clock.Now
	ctx := testCtx(t)
	newScaleSet(t, p, "acme", "shoes-1")
	first, err := p.ScaleSetClient(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(clientIdleTimeout - time.Second)
	p.sweepClients()
	if again, err := p.ScaleSetClient(ctx, "acme"); err != nil || again != first {
		t.Fatalf("client used %v ago was not kept (err %v)", clientIdleTimeout-time.Second, err)
	}

	f.mu.Lock()
	calls := len(f.seen)
	f.mu.Unlock()
	clock.Advance(clientIdleTimeout)
	p.sweepClients()
	p.mu.Lock()
	left := len(p.clients)
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d library clients left after %v unused, want 0", left, clientIdleTimeout)
	}
	newScaleSet(t, p, "acme", "shoes-1") // the library client again
	if rebuilt, err := p.ScaleSetClient(ctx, "acme"); err != nil || rebuilt == first {
		t.Fatalf("the dropped client is still served (err %v)", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.seen[calls:] {
		if r.method == "POST" {
			t.Errorf("rebuilding the library client made a REST call: %s %s", r.method, r.path)
		}
	}
}
