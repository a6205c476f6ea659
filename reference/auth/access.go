package auth

import (
	"fmt"
	"strings"

	"github.com/prism-suite/prism/reference/internal/authmutant"
)

// Access is what a call does to a namespace's data: [Read] or [Write]. A
// grant of one does not imply the other.
type Access uint8

// The accesses a call needs and a token grants.
const (
	// Read covers calls that only observe data (Get, Scan, Subscribe, ...).
	Read Access = 1 << iota
	// Write covers calls that change data or deliver messages (Set, Delete,
	// Publish, Ack, Register, Multicast, ...).
	Write
)

// String returns "read", "write", or "read+write".
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Read | Write:
		return "read+write"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// ParseAccess parses "read" or "write".
func ParseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	}
	return 0, fmt.Errorf("parse access: %q is not read or write", s)
}

// methodAccess maps each data service to the access its methods need.
// A method not listed here is unknown: [MethodAccess] reports it so, and the
// interceptor requires [Write] for it.
var methodAccess = map[string]map[string]Access{
	"prism.keyvalue.v1.KeyValue": {
		"Get": Read, "Exists": Read, "GetTTL": Read, "Scan": Read, "Count": Read, "BatchGet": Read,
		"Set": Write, "Delete": Write, "Expire": Write, "Persist": Write, "BatchSet": Write, "BatchDelete": Write,
	},
	"prism.pubsub.v1.PubSub": {
		"Subscribe": Read,
		"Publish":   Write, "PublishBatch": Write, "Ack": Write, "DeleteDurable": Write,
	},
}

// registryPackage is the multicast registry's proto package; its methods
// are matched by name in any of its services (the proto is not written yet).
const registryPackage = "prism.registry.v1."

var registryAccess = map[string]Access{
	"Enumerate": Read, "Receive": Read,
	"Register": Write, "Unregister": Write, "Multicast": Write,
}

// MethodAccess returns the access a full gRPC method name
// ("/prism.keyvalue.v1.KeyValue/Get") needs, and false for a method it does
// not know. The table:
//
//	KeyValue  read:  Get Exists GetTTL Scan Count BatchGet
//	          write: Set Delete Expire Persist BatchSet BatchDelete
//	PubSub    read:  Subscribe
//	          write: Publish PublishBatch Ack DeleteDurable
//	registry  read:  Enumerate Receive                         (any service in prism.registry.v1)
//	          write: Register Unregister Multicast
func MethodAccess(fullMethod string) (Access, bool) {
	s := strings.TrimPrefix(fullMethod, "/")
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return 0, false
	}
	service, method := s[:i], s[i+1:]
	if m, ok := methodAccess[service]; ok {
		a, ok := m[method]
		return a, ok
	}
	if strings.HasPrefix(service, registryPackage) {
		a, ok := registryAccess[method]
		return a, ok
	}
	return 0, false
}

// openEnded are the methods whose calls last as long as the client wants
// (subscriptions): the interceptor ends them when their token expires.
var openEnded = map[string]bool{"/prism.pubsub.v1.PubSub/Subscribe": true}

// OpenEnded reports whether a full gRPC method name is an open-ended
// stream, which [Interceptor] ends when its token expires: PubSub Subscribe
// and the registry's Receive (in any service of prism.registry.v1). Every
// other call, unary ones forwarded as streams included, runs to its end
// once authorised.
func OpenEnded(fullMethod string) bool {
	if openEnded[fullMethod] {
		return true
	}
	s := strings.TrimPrefix(fullMethod, "/")
	return strings.HasPrefix(s, registryPackage) && strings.HasSuffix(s, "/Receive")
}

// Grant is one namespace and the access a token has to it. Namespace "*"
// stands for every namespace.
type Grant struct {
	Namespace string
	Access    Access
}

// grants is a principal's grants by namespace.
type grants map[string]Access

func (g grants) allows(namespace string, a Access) bool {
	if authmutant.Compiled && authmutant.Active() == authmutant.NamespacePrefix {
		for ns, have := range g {
			if strings.HasPrefix(namespace, ns) && have&a == a {
				return true
			}
		}
	}
	return g[namespace]&a == a || g["*"]&a == a
}

// grantsFrom reads the grants carried by a claim's value: a space-separated
// string or an array of strings. Values of other types grant nothing.
func (c *compiled) grantsFrom(v any) grants {
	var values []string
	switch v := v.(type) {
	case string:
		values = strings.Fields(v)
	case []string:
		values = v
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				values = append(values, s)
			}
		}
	}
	g := grants{}
	for _, val := range values {
		if c.pattern != nil {
			if ns, a, ok := c.pattern.match(val); ok {
				g[ns] |= a
			}
		}
		if m, ok := c.mapping[val]; ok {
			for ns, a := range m {
				g[ns] |= a
			}
		}
	}
	return g
}
