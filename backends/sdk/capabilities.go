package sdk

import (
	"github.com/prism-suite/prism/proto/capability"
)

// Capabilities returns the capabilities a driver declares: exactly those whose
// interfaces it satisfies. A family's extensions (ttl, scan, batch; ordered,
// queue, durable) count only together with its basic interface, and
// auth.rotation ([CredentialRotator]) only with auth.backend-credentials
// ([BackendCredentials]).
func Capabilities(d Driver) []capability.Name {
	var out []capability.Name
	if _, ok := d.(KeyValueBasic); ok {
		out = append(out, capability.KeyValueBasic)
		if _, ok := d.(KeyValueTTL); ok {
			out = append(out, capability.KeyValueTTL)
		}
		if _, ok := d.(KeyValueScan); ok {
			out = append(out, capability.KeyValueScan)
		}
		if _, ok := d.(KeyValueBatch); ok {
			out = append(out, capability.KeyValueBatch)
		}
		if _, ok := d.(KeyValueLinearizable); ok {
			out = append(out, capability.KeyValueLinearizable)
		}
	}
	if _, ok := d.(PubSubBasic); ok {
		out = append(out, capability.PubSubBasic)
		if _, ok := d.(PubSubOrdered); ok {
			out = append(out, capability.PubSubOrdered)
		}
		if _, ok := d.(PubSubQueue); ok {
			out = append(out, capability.PubSubQueue)
		}
		if _, ok := d.(PubSubDurable); ok {
			out = append(out, capability.PubSubDurable)
		}
	}
	if _, ok := d.(BackendCredentials); ok {
		out = append(out, capability.AuthBackendCredentials)
		if _, ok := d.(CredentialRotator); ok {
			out = append(out, capability.AuthRotation)
		}
	}
	return out
}

// Default limits, used where a driver's Limits leaves a field 0.
const (
	DefaultMaxKeyBytes     = 1024
	DefaultMaxValueBytes   = 1 << 20
	DefaultMaxBatchSize    = 1000
	DefaultMaxPageSize     = 1000
	DefaultMaxTopicBytes   = 256
	DefaultMaxPayloadBytes = 1 << 20
	// DefaultPageSize is used when a Scan asks for page size 0.
	DefaultPageSize = 100
)

// withDefaults fills zero limits with the SDK defaults.
func (l Limits) withDefaults() Limits {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxKeyBytes, DefaultMaxKeyBytes)
	def(&l.MaxValueBytes, DefaultMaxValueBytes)
	def(&l.MaxBatchSize, DefaultMaxBatchSize)
	def(&l.MaxPageSize, DefaultMaxPageSize)
	def(&l.MaxTopicBytes, DefaultMaxTopicBytes)
	def(&l.MaxPayloadBytes, DefaultMaxPayloadBytes)
	return l
}
