package myshoes_test

import (
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// checkCut checks that got is orig cut to max bytes on a rune boundary
// and marked, or orig itself when it fits.
func checkCut(t *testing.T, field, orig, got string, max int) {
	t.Helper()
	if len(orig) <= max {
		if got != orig {
			t.Errorf("%s of %d bytes (bound %d) changed to %.40q", field, len(orig), max, got)
		}
		return
	}
	kept, marked := strings.CutSuffix(got, myshoes.TruncatedMarker)
	switch {
	case !marked:
		t.Errorf("%s of %d bytes: %d bytes without the marker %q", field, len(orig), len(got), myshoes.TruncatedMarker)
	case len(kept) > max || len(kept) < max-utf8.UTFMax:
		t.Errorf("%s of %d bytes: kept %d bytes, want at most %d, cut on the last rune boundary", field, len(orig), len(kept), max)
	case !strings.HasPrefix(orig, kept):
		t.Errorf("%s: kept %.40q... is not the start of the value", field, kept)
	case !utf8.ValidString(got):
		t.Errorf("%s: cut inside a rune: %q", field, got[max-8:])
	}
}

// TestListTargetsBoundsFields: a target's long fields are cut at the
// client, so a 10 MB status description (issue "Nothing leaks, nothing
// wedges") never reaches the caller whole; a target with an oversized ID
// is skipped with a bounded warning; an oversized scope is invalid.
func TestListTargetsBoundsFields(t *testing.T) {
	var logs testkit.SyncBuffer
	fake, c := newFake(t, myshoes.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	// Three-byte runes, so that the bound falls inside one.
	huge := strings.Repeat("日本語", 10<<20/9)
	hugeID := strings.Repeat("i", 1<<20)
	in := []myshoes.Target{
		{Scope: "org-huge", StatusDescription: huge, ResourceType: strings.Repeat("r", 5000), ProviderURL: "http://p/" + strings.Repeat("u", 5000)},
		{Scope: strings.Repeat("o", 1<<20), StatusDescription: "scope too long"},
		{Scope: "org-exact", StatusDescription: strings.Repeat("x", myshoes.MaxStatusDescriptionBytes)},
		{Scope: "org-one-over", StatusDescription: strings.Repeat("x", myshoes.MaxStatusDescriptionBytes+1)},
		{Scope: "org-ascii-over", StatusDescription: "é" + strings.Repeat("x", 3000)},
		{ID: hugeID, Scope: "org-id-1"},
		{ID: hugeID, Scope: "org-id-2"}, // the same oversized ID: skipped, not a duplicate
		{Scope: "octo-org", StatusDescription: "github app is not installed"},
	}
	fake.SetTargets(in)
	got, err := c.ListTargets(t.Context())
	if err != nil {
		t.Fatalf("ListTargets: %v", err)
	}
	byID := map[string]myshoes.Target{}
	byScope := map[string]myshoes.Target{}
	for _, tg := range got {
		if len(tg.ID) > myshoes.MaxIDBytes {
			t.Errorf("a target with an id of %d bytes was returned", len(tg.ID))
		}
		byID[tg.ID] = tg
		byScope[tg.Scope] = tg
	}
	if len(got) != 6 {
		t.Errorf("%d targets, want 6: the two with an oversized id skipped", len(got))
	}
	for _, want := range fake.Targets() {
		tg, ok := byID[want.ID]
		if want.ID == hugeID {
			if ok {
				t.Errorf("target %s, whose id is %d bytes, was returned", want.Scope, len(hugeID))
			}
			continue
		}
		if !ok {
			t.Errorf("target %.20s not returned", want.Scope)
			continue
		}
		name := want.Scope[:min(len(want.Scope), 20)]
		checkCut(t, "status_description of "+name, want.StatusDescription, tg.StatusDescription, myshoes.MaxStatusDescriptionBytes)
		checkCut(t, "scope of "+name, want.Scope, tg.Scope, myshoes.MaxFieldBytes)
		checkCut(t, "resource_type of "+name, want.ResourceType, tg.ResourceType, myshoes.MaxFieldBytes)
		checkCut(t, "provider_url of "+name, want.ProviderURL, tg.ProviderURL, myshoes.MaxFieldBytes)
		checkCut(t, "status of "+name, want.Status, tg.Status, myshoes.MaxFieldBytes)
	}
	long := byScope[strings.Repeat("o", myshoes.MaxFieldBytes)+myshoes.TruncatedMarker]
	if long.ID == "" {
		t.Fatalf("the target with an oversized scope was not returned cut (scopes %v)", scopesShort(got))
	}
	if err := myshoes.ValidScope(long.Scope); err == nil {
		t.Errorf("a cut scope is valid")
	}
	if err := long.Validate(); err == nil {
		t.Errorf("Validate of a target with a cut scope: no error")
	}
	if tg := byScope["octo-org"]; tg.StatusDescription != "github app is not installed" {
		t.Errorf("a short description changed: %q", tg.StatusDescription)
	}

	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "skip targets") || !strings.Contains(out, "skipped=2") {
		t.Errorf("no warning about the skipped targets:\n%s", out)
	}
	if len(out) > 2000 {
		t.Errorf("the warning is %d bytes: the oversized ids were logged whole", len(out))
	}
}

// scopesShort lists the scopes, each cut for a failure message.
func scopesShort(ts []myshoes.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Scope[:min(len(t.Scope), 20)]
	}
	return out
}

// TestListTargetsSkipWarningRateLimited: the warning about skipped
// targets comes with the first list that has them and every tenth after.
func TestListTargetsSkipWarningRateLimited(t *testing.T) {
	var logs testkit.SyncBuffer
	fake, c := newFake(t, myshoes.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	fake.SetTargets([]myshoes.Target{{ID: strings.Repeat("i", myshoes.MaxIDBytes+1), Scope: "org"}})
	for range 20 {
		got, err := c.ListTargets(t.Context())
		if err != nil || len(got) != 0 {
			t.Fatalf("ListTargets = %d targets, %v; want none", len(got), err)
		}
	}
	if n := strings.Count(logs.String(), "skip targets"); n != 3 {
		t.Errorf("%d warnings over 20 lists, want 3 (lists 1, 10 and 20):\n%s", n, logs.String())
	}
}

// TestGetTargetBoundsFields: GetTarget cuts the same fields.
func TestGetTargetBoundsFields(t *testing.T) {
	fake, c := newFake(t, myshoes.Config{})
	tg := fake.AddTarget("octo-org", "nano")
	desc := strings.Repeat("ü", 10<<20/2)
	status := strings.Repeat("s", 3000)
	fake.SetStatus(tg.ID, status, desc)
	got, err := c.GetTarget(t.Context(), tg.ID)
	if err != nil {
		t.Fatalf("GetTarget: %v", err)
	}
	checkCut(t, "status_description", desc, got.StatusDescription, myshoes.MaxStatusDescriptionBytes)
	checkCut(t, "status", status, got.Status, myshoes.MaxFieldBytes)
	if got.ID != tg.ID || got.Scope != "octo-org" {
		t.Errorf("got id %s scope %s, want %s octo-org", got.ID, got.Scope, tg.ID)
	}
}

func TestTargetValidateLongID(t *testing.T) {
	id := strings.Repeat("a", myshoes.MaxIDBytes)
	if err := (myshoes.Target{ID: id, Scope: "org"}).Validate(); err != nil {
		t.Errorf("id of %d bytes: %v", len(id), err)
	}
	err := (myshoes.Target{ID: id + "a", Scope: "org"}).Validate()
	if err == nil {
		t.Fatalf("id of %d bytes: want an error", len(id)+1)
	}
	if len(err.Error()) > 200 {
		t.Errorf("the error quotes the whole id: %d bytes", len(err.Error()))
	}
}
