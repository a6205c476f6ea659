package proxy

import (
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/prism-suite/prism/proto/capability"
	_ "github.com/prism-suite/prism/proto/prism/keyvalue/v1" // registers the KeyValue descriptors for reflection
	_ "github.com/prism-suite/prism/proto/prism/pubsub/v1"   // registers the PubSub descriptors for reflection
	"github.com/prism-suite/prism/reference/registry"
)

// Pattern names the data API a namespace serves.
type Pattern string

// The patterns the proxy serves.
const (
	// KeyValue forwards prism.keyvalue.v1.KeyValue to one plugin declaring
	// keyvalue.basic.
	KeyValue Pattern = "keyvalue"
	// PubSub forwards prism.pubsub.v1.PubSub to one plugin declaring
	// pubsub.basic.
	PubSub Pattern = "pubsub"
	// Registry serves prism.registry.v1.Registry itself (not forwarded),
	// composed from a registry slot (a KeyValue plugin declaring
	// keyvalue.basic, keyvalue.scan and keyvalue.ttl) and a messaging slot (a
	// PubSub plugin declaring pubsub.basic; pubsub.durable for at-least-once).
	Registry Pattern = "registry"
)

// The slots of the registry pattern.
const (
	registrySlot  = "registry"
	messagingSlot = "messaging"
)

// slotSpec is one plugin a pattern is built from: the capabilities the
// plugin must declare and the services forwarded to it.
type slotSpec struct {
	Name     string
	Pattern  Pattern
	Requires []capability.Name
	Services []string
}

// patternSpec is what a pattern is made of. A pattern the proxy composes
// itself (the multicast registry) will have several slots and serve its own
// service from a coordinator; the forwarding patterns have one slot each.
type patternSpec struct {
	Slots []slotSpec
}

// Service names forwarded by the patterns.
const (
	KeyValueService = "prism.keyvalue.v1.KeyValue"
	PubSubService   = "prism.pubsub.v1.PubSub"
	// RegistryService is served by the proxy itself for registry namespaces.
	RegistryService = "prism.registry.v1.Registry"
)

var patterns = map[Pattern]patternSpec{
	KeyValue: {Slots: []slotSpec{{Name: "keyvalue", Pattern: KeyValue, Requires: []capability.Name{capability.KeyValueBasic},
		Services: []string{KeyValueService}}}},
	PubSub: {Slots: []slotSpec{{Name: "pubsub", Pattern: PubSub, Requires: []capability.Name{capability.PubSubBasic},
		Services: []string{PubSubService}}}},
	Registry: {Slots: []slotSpec{
		{Name: registrySlot, Pattern: Registry, Requires: registry.RegistrySlotRequires},
		{Name: messagingSlot, Pattern: Registry, Requires: registry.MessagingSlotRequires}}},
}

func patternNames() []string {
	var out []string
	for p := range patterns {
		out = append(out, string(p))
	}
	sort.Strings(out)
	return out
}

// forwardedServices returns the services any pattern forwards whose
// descriptors are linked into this binary (so reflection can describe them).
func forwardedServices() []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	seen := map[string]bool{}
	for _, name := range patternNames() {
		for _, s := range patterns[Pattern(name)].Slots {
			for _, svc := range s.Services {
				if seen[svc] {
					continue
				}
				seen[svc] = true
				d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
				if err != nil {
					continue
				}
				if sd, ok := d.(protoreflect.ServiceDescriptor); ok {
					out = append(out, sd)
				}
			}
		}
	}
	return out
}
