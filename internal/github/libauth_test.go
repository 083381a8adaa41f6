package github

import (
	"fmt"
	"strings"
	"testing"
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
