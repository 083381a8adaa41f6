package shoes

import (
	"strings"

	shoespb "github.com/shoes-scaleset/shoes-scaleset/proto"
)

// ResourceType is the instance size a plugin is asked for. Its values match
// the wire enum of the shoes protocol.
type ResourceType int

// Resource types, in the order of the shoes protocol enum.
const (
	ResourceUnknown ResourceType = iota
	ResourceNano
	ResourceMicro
	ResourceSmall
	ResourceMedium
	ResourceLarge
	ResourceXLarge
	ResourceXLarge2
	ResourceXLarge3
	ResourceXLarge4
)

var resourceNames = [...]string{
	ResourceUnknown: "unknown",
	ResourceNano:    "nano",
	ResourceMicro:   "micro",
	ResourceSmall:   "small",
	ResourceMedium:  "medium",
	ResourceLarge:   "large",
	ResourceXLarge:  "xlarge",
	ResourceXLarge2: "2xlarge",
	ResourceXLarge3: "3xlarge",
	ResourceXLarge4: "4xlarge",
}

// ParseResourceType maps a myshoes resource type string ("nano" … "4xlarge")
// to a ResourceType. Anything else is ResourceUnknown.
func ParseResourceType(s string) ResourceType {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, name := range resourceNames {
		if name == s {
			return ResourceType(i)
		}
	}
	return ResourceUnknown
}

// String returns the myshoes spelling of r ("unknown" when out of range).
func (r ResourceType) String() string {
	if r < 0 || int(r) >= len(resourceNames) {
		return resourceNames[ResourceUnknown]
	}
	return resourceNames[r]
}

func (r ResourceType) toProto() shoespb.ResourceType {
	if r < 0 || int(r) >= len(resourceNames) {
		return shoespb.ResourceType_Unknown
	}
	return shoespb.ResourceType(r)
}

func resourceFromProto(p shoespb.ResourceType) ResourceType {
	r := ResourceType(p)
	if r < 0 || int(r) >= len(resourceNames) {
		return ResourceUnknown
	}
	return r
}
