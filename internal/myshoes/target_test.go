package myshoes

import (
	"strings"
	"testing"
)

func TestValidScope(t *testing.T) {
	tests := []struct {
		scope   string
		wantErr string // substring; "" = valid
	}{
		{"octo-org", ""},
		{"octocat/hello-world", ""},
		{"Octo_Emu/repo.name_1", ""},
		{"o/.github", ""},
		{"", "empty"},
		{"/repo", "owner is empty"},
		{"org/", "repository is empty"},
		{"-org", "hyphen"},
		{"org name", "invalid character"},
		{"org/repo/extra", "invalid character"},
		{"org/..", "not a name"},
		{"enterprises/acme", "enterprise"},
		{"org\n", "invalid character"},
		{strings.Repeat("a", 101), "longer than 100"},
	}
	for _, tt := range tests {
		err := ValidScope(tt.scope)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidScope(%q) = %v, want nil", tt.scope, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidScope(%q) = %v, want error containing %q", tt.scope, err, tt.wantErr)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	if err := (Target{Scope: "org"}).Validate(); err == nil {
		t.Error("target without id: want an error")
	}
	if err := (Target{ID: "x", Scope: "bad scope"}).Validate(); err == nil {
		t.Error("target with a bad scope: want an error")
	}
	if err := (Target{ID: "x", Scope: "org/repo"}).Validate(); err != nil {
		t.Errorf("good target: %v", err)
	}
}

func TestResourceType(t *testing.T) {
	tests := []struct {
		in   string
		want ResourceType
		num  int32 // the shoes proto enum number
	}{
		{"unknown", ResourceTypeUnknown, 0},
		{"nano", ResourceTypeNano, 1},
		{"micro", ResourceTypeMicro, 2},
		{"small", ResourceTypeSmall, 3},
		{"medium", ResourceTypeMedium, 4},
		{"large", ResourceTypeLarge, 5},
		{"xlarge", ResourceTypeXLarge, 6},
		{"2xlarge", ResourceTypeXLarge2, 7},
		{"3xlarge", ResourceTypeXLarge3, 8},
		{"4xlarge", ResourceTypeXLarge4, 9},
		{"huge", ResourceTypeUnknown, 0},
		{"", ResourceTypeUnknown, 0},
		{"Nano", ResourceTypeUnknown, 0},
	}
	for _, tt := range tests {
		got := ParseResourceType(tt.in)
		if got != tt.want || int32(got) != tt.num {
			t.Errorf("ParseResourceType(%q) = %d, want %d", tt.in, got, tt.num)
		}
		if tt.want != ResourceTypeUnknown && got.String() != tt.in {
			t.Errorf("%d.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
	if s := ResourceType(42).String(); s != "unknown" {
		t.Errorf("ResourceType(42).String() = %q", s)
	}
}
