package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
)

// gatedGitHub is the fake GitHub whose sessions' polls wait for an answer
// from the test: nil lets the poll through to the fake session (an empty
// poll answers after pollHold), an error fails it. Until then a poll is in
// flight, as a long poll is for a whole poll hold.
type gatedGitHub struct {
	*fakeGitHub
	answers chan error
}

func (g *gatedGitHub) ScaleSet(scope string, id int) ScaleSetAPI {
	return gatedAPI{ScaleSetAPI: g.fakeGitHub.ScaleSet(scope, id), answers: g.answers}
}

type gatedAPI struct {
	ScaleSetAPI
	answers chan error
}

func (a gatedAPI) OpenSession(ctx context.Context, owner string) (Session, error) {
	s, err := a.ScaleSetAPI.OpenSession(ctx, owner)
	if err != nil {
		return nil, err
	}
	return gatedSession{Session: s, answers: a.answers}, nil
}

type gatedSession struct {
	Session
	answers chan error
}

func (s gatedSession) GetMessage(ctx context.Context, lastID int64, maxCapacity int) (*github.Message, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case err := <-s.answers:
		if err != nil {
			return nil, err
		}
		return s.Session.GetMessage(ctx, lastID, maxCapacity)
	}
}

// newGatedUnit is newUnit on gatedGitHub, with a poll hold long enough
// that only a poll in flight can make the listener ready: no poll answers
// until the test says so.
func newGatedUnit(t *testing.T, scope string) (*unit, *gatedGitHub) {
	t.Helper()
	u := newUnit(t, []string{scope}, func(c *Config) { c.PollHold = time.Minute })
	gh := &gatedGitHub{fakeGitHub: u.gh, answers: make(chan error)}
	script, err := runnerscript.New("")
	if err != nil {
		t.Fatal(err)
	}
	if u.c, err = New(u.st, u.targets, gh, u.plugin, script, u.c.cfg); err != nil {
		t.Fatal(err)
	}
	return u, gh
}

// readyReasons returns whether the controller is ready, and why not.
func readyReasons(u *unit) (bool, string) {
	ok, why := u.c.Ready()
	return ok, fmt.Sprint(why)
}

// TestReadyWhilePolling: a listener is not ready before its session; it
// is ready as soon as its first poll is in flight (a long poll answers
// only after the poll hold); a failed poll makes it not ready, with the
// error, although its retry is in flight; an answered poll makes it ready
// again; and a poll in flight for longer than 2 poll holds (a hung
// connection) does not count.
func TestReadyWhilePolling(t *testing.T) {
	u, gh := newGatedUnit(t, "org-a")
	u.gh.openGate = make(chan struct{})
	u.start()

	u.wait("not ready: no session yet", func() (bool, string) {
		ok, why := u.c.Ready()
		return !ok && len(why) == 1 && why[0].Scope == "org-a" && strings.HasPrefix(why[0].Reason, "no message session"), fmt.Sprint(why)
	})
	close(u.gh.openGate)

	u.wait("ready with the first poll in flight", func() (bool, string) { return readyReasons(u) })
	st, err := u.c.ScaleSets()
	if err != nil || len(st) != 1 || !st[0].LastPoll.IsZero() {
		t.Fatalf("a poll answered already (%+v, %v): the test cannot tell a poll in flight from one that answered", st, err)
	}

	gh.answers <- errors.New("get message: 500 Internal Server Error")
	u.wait("not ready after the poll failed, its retry in flight", func() (bool, string) {
		ok, why := u.c.Ready()
		return !ok && len(why) == 1 && strings.Contains(why[0].Reason, "has not polled within 2 poll holds: get message: 500 Internal Server Error"),
			fmt.Sprint(why)
	})

	gh.answers <- nil // the fake session's empty poll answers after pollHold
	u.wait("ready once a poll answered", func() (bool, string) {
		ok, why := readyReasons(u)
		st, _ := u.c.ScaleSets()
		return ok && len(st) == 1 && !st[0].LastPoll.IsZero(), why
	})

	// The next poll is in flight and never answers: past 2 poll holds,
	// neither it nor the last answer counts.
	u.clock.advance(3 * time.Minute)
	u.wait("not ready: a poll in flight for 3 minutes with a 1m poll hold", func() (bool, string) {
		ok, why := u.c.Ready()
		return !ok && len(why) == 1 && strings.Contains(why[0].Reason, "has not polled within 2 poll holds"), fmt.Sprint(why)
	})
}

// startFailingPlugin is the fake plugin that says its processes fail to
// start, as the shoes host does (StartFailure).
type startFailingPlugin struct {
	*fakePlugin
	why chan string // the reason StartFailure returns, replaced by the test
	cur string
}

func (p *startFailingPlugin) StartFailure() string {
	select {
	case p.cur = <-p.why:
	default:
	}
	return p.cur
}

// TestReadinessNamesAFailingPlugin: while the plugin says its processes
// fail to start, the controller is not ready, with the plugin's reason.
func TestReadinessNamesAFailingPlugin(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	plugin := &startFailingPlugin{fakePlugin: u.plugin, why: make(chan string, 1)}
	script, err := runnerscript.New("")
	if err != nil {
		t.Fatal(err)
	}
	if u.c, err = New(u.st, u.targets, u.gh, plugin, script, u.c.cfg); err != nil {
		t.Fatal(err)
	}
	u.start()
	u.listening("org-a")
	u.wait("ready", func() (bool, string) { return readyReasons(u) })

	const reason = "the last 2 plugin process starts failed, since 3s ago: start plugin /x: exit status 1"
	plugin.why <- reason
	u.wait("not ready because of the plugin", func() (bool, string) {
		ok, why := u.c.Ready()
		return !ok && len(why) == 1 && why[0].Reason == "plugin: "+reason && why[0].Target == "", fmt.Sprint(why)
	})
	plugin.why <- ""
	u.wait("ready again", func() (bool, string) { return readyReasons(u) })
}
