// Package myshoes is a client for the REST API of myshoes
// (github.com/whywaita/myshoes), the source of the targets the sidecar serves.
// See PROTOCOLS.md §3 for the wire contract.
package myshoes

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Target statuses as myshoes writes them.
const (
	StatusActive  = "active"
	StatusRunning = "running"
	StatusSuspend = "suspend"
	StatusDeleted = "deleted"
	StatusError   = "error"
)

// Listed reports whether myshoes lists targets of this status on GET /target,
// that is, whether the target can receive jobs.
func Listed(status string) bool {
	switch status {
	case StatusActive, StatusRunning, StatusError:
		return true
	}
	return false
}

// KnownStatus reports whether status is one myshoes writes.
func KnownStatus(status string) bool {
	return Listed(status) || status == StatusSuspend || status == StatusDeleted
}

// Target is one myshoes target: a GitHub organization or repository, as
// returned by GET /target and GET /target/{id}.
type Target struct {
	ID                string    `json:"id"`
	Scope             string    `json:"scope"`
	TokenExpiredAt    time.Time `json:"token_expired_at"`
	ResourceType      string    `json:"resource_type"`
	ProviderURL       string    `json:"provider_url"`
	Status            string    `json:"status"`
	StatusDescription string    `json:"status_description"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// Bounds of the string fields of a Target. myshoes IDs are UUIDs, scopes
// are at most "owner/repo" of 100 characters each, statuses and resource
// types are single words; only the description is free text, written by
// myshoes from whatever error it met.
const (
	// MaxIDBytes bounds an ID: a target with a longer one is skipped.
	MaxIDBytes = 128
	// MaxFieldBytes bounds the scope, status, resource type and provider
	// URL; a longer value is cut (a cut scope is invalid).
	MaxFieldBytes = 256
	// MaxStatusDescriptionBytes bounds the status description; a longer
	// one is cut.
	MaxStatusDescriptionBytes = 1024
)

// bounded returns t with its string fields cut to their bounds, on a rune
// boundary, ending in TruncatedMarker; the ID is left alone (the client
// skips targets whose ID is too long).
func (t Target) bounded() Target {
	t.Scope = truncateTo(t.Scope, MaxFieldBytes)
	t.ResourceType = truncateTo(t.ResourceType, MaxFieldBytes)
	t.ProviderURL = truncateTo(t.ProviderURL, MaxFieldBytes)
	t.Status = truncateTo(t.Status, MaxFieldBytes)
	t.StatusDescription = truncateTo(t.StatusDescription, MaxStatusDescriptionBytes)
	return t
}

// Owner is the organization (or user) part of the scope.
func (t Target) Owner() string {
	owner, _, _ := strings.Cut(t.Scope, "/")
	return owner
}

// Repo is the repository name for a repository scope and "" for an
// organization scope.
func (t Target) Repo() string {
	_, repo, _ := strings.Cut(t.Scope, "/")
	return repo
}

// IsRepo reports whether the scope is a repository ("owner/repo").
func (t Target) IsRepo() bool {
	return strings.Contains(t.Scope, "/")
}

// Validate reports whether the target can be served: it has an ID and a
// valid scope. A target that fails is still returned by ListTargets, so the
// caller decides what to do with it.
func (t Target) Validate() error {
	if t.ID == "" {
		return errors.New("target has no id")
	}
	if len(t.ID) > MaxIDBytes {
		return fmt.Errorf("target id %s: longer than %d bytes", truncateTo(t.ID, 40), MaxIDBytes)
	}
	if err := ValidScope(t.Scope); err != nil {
		return fmt.Errorf("target %s: %w", t.ID, err)
	}
	return nil
}

// ValidScope checks that scope is an organization ("org") or a repository
// ("owner/repo") in GitHub's naming rules. Enterprise scopes
// ("enterprises/x") are rejected: myshoes has none, and the scale set client
// would read that scope as an enterprise rather than a repository.
func ValidScope(scope string) error {
	if scope == "" {
		return errors.New("scope is empty")
	}
	owner, repo, isRepo := strings.Cut(scope, "/")
	if err := validOwner(owner); err != nil {
		return fmt.Errorf("scope %q: %w", scope, err)
	}
	if !isRepo {
		return nil
	}
	if owner == "enterprises" {
		return fmt.Errorf("scope %q: enterprise scopes are not supported", scope)
	}
	if err := validRepo(repo); err != nil {
		return fmt.Errorf("scope %q: %w", scope, err)
	}
	return nil
}

// validOwner accepts GitHub login names: letters, digits and hyphens, not
// starting with a hyphen. Underscores are allowed for enterprise managed
// users ("name_shortcode") and GHES.
func validOwner(s string) error {
	if s == "" {
		return errors.New("owner is empty")
	}
	if len(s) > 100 {
		return errors.New("owner is longer than 100 characters")
	}
	if s[0] == '-' {
		return errors.New("owner starts with a hyphen")
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("owner has invalid character %q", c)
		}
	}
	return nil
}

// validRepo accepts GitHub repository names: letters, digits, '.', '-' and
// '_', except "." and "..".
func validRepo(s string) error {
	if s == "" {
		return errors.New("repository is empty")
	}
	if len(s) > 100 {
		return errors.New("repository is longer than 100 characters")
	}
	if s == "." || s == ".." {
		return fmt.Errorf("repository %q is not a name", s)
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("repository has invalid character %q", c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ResourceType is a myshoes resource type, numbered exactly like the shoes
// plugin protocol's enum (shoespb.ResourceType), so a conversion
// shoespb.ResourceType(rt) is lossless.
type ResourceType int32

// Resource types, in the plugin protocol's numbering.
const (
	ResourceTypeUnknown ResourceType = iota
	ResourceTypeNano
	ResourceTypeMicro
	ResourceTypeSmall
	ResourceTypeMedium
	ResourceTypeLarge
	ResourceTypeXLarge
	ResourceTypeXLarge2
	ResourceTypeXLarge3
	ResourceTypeXLarge4
)

var resourceTypeNames = [...]string{
	ResourceTypeUnknown: "unknown",
	ResourceTypeNano:    "nano",
	ResourceTypeMicro:   "micro",
	ResourceTypeSmall:   "small",
	ResourceTypeMedium:  "medium",
	ResourceTypeLarge:   "large",
	ResourceTypeXLarge:  "xlarge",
	ResourceTypeXLarge2: "2xlarge",
	ResourceTypeXLarge3: "3xlarge",
	ResourceTypeXLarge4: "4xlarge",
}

// ParseResourceType maps myshoes's resource_type string onto the enum; any
// string it does not know is ResourceTypeUnknown.
func ParseResourceType(s string) ResourceType {
	for i, name := range resourceTypeNames {
		if s == name {
			return ResourceType(i)
		}
	}
	return ResourceTypeUnknown
}

// String is the myshoes spelling ("nano", ..., "4xlarge", "unknown").
func (rt ResourceType) String() string {
	if rt < 0 || int(rt) >= len(resourceTypeNames) {
		return resourceTypeNames[ResourceTypeUnknown]
	}
	return resourceTypeNames[rt]
}

// ResourceTypeValue parses the target's resource_type.
func (t Target) ResourceTypeValue() ResourceType {
	return ParseResourceType(t.ResourceType)
}
