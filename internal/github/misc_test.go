package github

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestIsTransient(t *testing.T) {
	status := func(code int) error { return fmt.Errorf("op: %w", &StatusError{StatusCode: code}) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"transport", &url.Error{Op: "Get", URL: "http://x", Err: errors.New("connection refused")}, true},
		{"500", status(500), true},
		{"429", status(429), true},
		{"404", status(404), false},
		{"401", status(401), false},
		{"400", status(400), false},
		{"403 rate limited", &StatusError{StatusCode: 403, rateLimited: true}, true},
		{"conflict", fmt.Errorf("x: %w", ErrSessionConflict), false},
		{"not installed", fmt.Errorf("x: %w", ErrNotInstalled), false},
		{"group", fmt.Errorf("x: %w", ErrRunnerGroupNotFound), false},
		{"unsupported message", &UnsupportedMessageError{MessageID: 1}, false},
		{"opaque library error", errors.New("request failed: unexpected status code: 502"), true},
	}
	for _, tt := range tests {
		if got := IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !errors.Is(status(404), ErrNotFound) || !errors.Is(status(401), ErrUnauthorized) || errors.Is(status(500), ErrNotFound) {
		t.Error("StatusError.Is mapping is wrong")
	}
}

func TestGetMessageCanceledByContext(t *testing.T) {
	f, p := newFakeProvider(t, func(c *actionsfake.Config) { c.PollHold = time.Minute })
	s := openSession(t, p)
	queue := queuePath(t, s)

	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := s.GetMessage(ctx, 0, 1)
		done <- err
	}()
	// The fake holds the poll, as the broker does.
	testkit.Eventually(t, 10*time.Second, "the poll to reach the fake", func() bool { return f.count("GET", queue) == 1 })
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || IsTransient(err) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := f.count("GET", queue); n != 1 {
		t.Fatalf("polled %d times, want 1", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	_, p := newFakeProvider(t)
	ctx := testCtx(t)
	sc := mustScope(t, "acme")

	const n = 8
	clients := make([]any, n)
	errs := make(chan error, 3*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := p.ScaleSetClient(ctx, "acme")
			clients[i] = c
			errs <- err
			_, err = p.RunnerVersion(ctx, "acme", "latest")
			errs <- err
			_, err = p.adminConn(ctx, sc)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range clients {
		if clients[i] != clients[0] {
			t.Fatalf("goroutine %d got another client", i)
		}
	}
}
