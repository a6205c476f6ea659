// Package sdk is the Go plugin SDK: what every Go Prism plugin uses.
//
// It splits the contract from the machinery. A plugin author writes a driver:
// a type that satisfies [Driver] and any of the capability interfaces below.
// The SDK owns the rest: the gRPC services, input validation against the
// driver's [Limits], error codes, the lifecycle state machine, health, the
// handshake line, logging, and exiting when the host goes away.
//
// Declared capabilities follow from the interfaces the driver satisfies (see
// [Capabilities]); a plugin cannot declare what its code does not implement.
//
// Unless an interface says otherwise, every method may be called concurrently
// from many goroutines, must honour ctx, and must not retry internally: the
// caller decides about retries. Errors are reported with the sentinel errors
// of this package (wrapped with %w as you like) or as gRPC status errors.
package sdk

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Driver is what every plugin implements.
type Driver interface {
	// Describe returns the plugin's name, version and free-form facts. It is
	// called before Init too and must not touch the backend.
	Describe() Description
	// Limits returns the input limits the SDK enforces before calling the driver.
	// It may change after Init (limits can come from config).
	Limits() Limits
	// Init validates cfg and connects to the backend. A bad field is reported
	// with [ConfigError]; an unreachable backend with [ErrUnavailable]; rejected
	// credentials with [ErrUnauthenticated]. Init is not called concurrently
	// with anything else.
	Init(ctx context.Context, cfg Config) error
	// Health reports the backend's health as the plugin sees it. It must answer
	// within ctx's deadline even when the backend hangs.
	Health(ctx context.Context) Health
	// Close releases the backend. No other method is called after Close.
	Close(ctx context.Context) error
}

// Description identifies a plugin.
type Description struct {
	Name    string
	Version string
	// Info holds facts for reports, e.g. "server_version".
	Info map[string]string
}

// Config is what Initialize delivers: the configuration document and the
// credentials, kept apart so hosts and logs can redact them.
type Config struct {
	// Values is the JSON-like config document (numbers are float64).
	Values map[string]any
	// Credentials never appear in logs or errors.
	Credentials map[string]string
	// Namespace is the Prism namespace this plugin instance serves.
	Namespace string
	// TracerProvider is the plugin's tracer provider when tracing is on
	// ([WithTracing]), nil when off. A driver that instruments its client
	// library (redisotel) does so only when it is not nil, so tracing off
	// costs nothing; spans of its own start with Child of package proto/tracing.
	TracerProvider trace.TracerProvider
}

// Limits are enforced by the SDK before a request reaches the driver; 0 means
// the SDK's default for that limit.
type Limits struct {
	MaxKeyBytes     int64
	MaxValueBytes   int64
	MaxBatchSize    int64
	MaxPageSize     int64
	MaxTopicBytes   int64
	MaxPayloadBytes int64
}

// HealthStatus is the data-plane health of a plugin.
type HealthStatus int

// The health states, as in prism.lifecycle.v1.HealthCheckResponse.
const (
	Healthy HealthStatus = iota + 1
	Degraded
	Unhealthy
)

// Health is a driver's report on its backend.
type Health struct {
	Status  HealthStatus
	Message string
	Details map[string]string
}

// Entry is a key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// KeyValueBasic is the contract of capability keyvalue.basic.
type KeyValueBasic interface {
	// Set stores value under key, replacing any previous value and clearing any
	// expiry. After Set returns, every Get on any connection sees value.
	Set(ctx context.Context, key string, value []byte) error
	// Get returns the value, or [ErrNotFound]. An expired key is not found.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes the key and reports whether it existed (and had not expired).
	Delete(ctx context.Context, key string) (existed bool, err error)
	// Exists reports whether the key is present and not expired.
	Exists(ctx context.Context, key string) (bool, error)
}

// KeyValueTTL is the contract of capability keyvalue.ttl (needs keyvalue.basic).
type KeyValueTTL interface {
	// SetWithTTL stores value under key, expiring after ttl (> 0).
	SetWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Expire sets the TTL of an existing key; [ErrNotFound] when it is missing.
	Expire(ctx context.Context, key string, ttl time.Duration) error
	// TTL returns the remaining TTL and whether the key expires at all;
	// [ErrNotFound] when it is missing.
	TTL(ctx context.Context, key string) (remaining time.Duration, hasExpiry bool, err error)
	// Persist removes the TTL and reports whether there was one; [ErrNotFound]
	// when the key is missing.
	Persist(ctx context.Context, key string) (hadExpiry bool, err error)
}

// KeyValueScan is the contract of capability keyvalue.scan (needs keyvalue.basic).
type KeyValueScan interface {
	// Scan returns up to limit keys that start with prefix (bytewise, no
	// pattern characters), continuing after cursor ("" for the first page). It
	// returns the next cursor, "" when done. Every key present for the whole
	// scan must be returned exactly once across pages. A page may be shorter
	// than limit without being the last. Values are filled when withValues.
	Scan(ctx context.Context, prefix, cursor string, limit int, withValues bool) (page []Entry, next string, err error)
	// Count returns the number of keys with the prefix.
	Count(ctx context.Context, prefix string) (int64, error)
}

// KeyValueLinearizable is the contract of capability keyvalue.linearizable
// (needs keyvalue.basic): a driver declares that Set, Get and Delete stay
// linearizable per key under faults of its backend (node crashes, pauses,
// partitions, failover) by implementing it. A robustness run
// (prism-accept --robustness) checks the promise; a driver that does not
// make it gets its anomalies reported as facts.
type KeyValueLinearizable interface {
	// Linearizable is a marker; it is never called.
	Linearizable()
}

// KeyValueBatch is the contract of capability keyvalue.batch (needs keyvalue.basic).
type KeyValueBatch interface {
	// BatchSet stores every entry, with ttl when > 0 (only called with a TTL
	// when the driver also declares keyvalue.ttl).
	BatchSet(ctx context.Context, entries []Entry, ttl time.Duration) error
	// BatchGet returns one value per key in order; nil and found=false for a
	// missing key.
	BatchGet(ctx context.Context, keys []string) (values [][]byte, found []bool, err error)
	// BatchDelete removes the keys and reports per key whether it existed.
	BatchDelete(ctx context.Context, keys []string) (existed []bool, err error)
}
