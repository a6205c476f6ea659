package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prism-suite/prism/reference/registry/filter"
)

// Config is a registry namespace's settings: the `registry:` block of a
// namespace with pattern registry in the proxy's YAML.
//
//	registry:
//	  key_prefix: "prism-registry/devices/"   # default prism-registry/<namespace>/
//	  topic_prefix: "prism-registry/devices/" # default prism-registry/<namespace>/
//	  max_identities: 10000                   # quota; 0: none
//	  presence_ttl: 10s                       # how long a receiver counts as live without a refresh
//	  ack_wait: 2s                            # at-least-once redelivery delay
//	  expiry_grace: 2s                        # how long the slot keeps an expired record
//	  max_fanout: 64                          # publishes in flight per multicast
//	  max_ttl: 24h                            # the longest registration TTL
//	  filter_max_nodes: 64                    # nodes of every kind (and, or, not, condition) in one filter; at most 64
//	  filter_max_bytes: 16384                 # a filter's encoded bytes; at most 16384
//	  schema:
//	    closed: false                         # true: fields the schema does not list are refused
//	    fields:
//	      type:  {type: string, required: true, enum: [sensor, actuator]}
//	      floor: {type: int}
//	      name:  {type: string, max_length: 64}
//	      tags:  {type: list, max_length: 10}
//
// The zero value is valid: every field has a default ([Config.WithDefaults]).
type Config struct {
	// KeyPrefix starts every key the registry writes in its registry slot.
	// It must be unique to the namespace when several namespaces share a
	// store. Default "prism-registry/<namespace>/".
	KeyPrefix string `yaml:"key_prefix,omitempty"`
	// TopicPrefix starts every topic the registry uses on its messaging
	// slot (inboxes, the proxies' control topics). Default
	// "prism-registry/<namespace>/".
	TopicPrefix string `yaml:"topic_prefix,omitempty"`
	// MaxIdentities is the quota: the most live identities the namespace
	// holds (0: no quota). Expired identities never count.
	MaxIdentities int64 `yaml:"max_identities,omitempty"`
	// PresenceTTL is how long an open Receive stream counts as a live
	// receiver without a refresh; the proxy holding the stream refreshes
	// it every third of it. It bounds how long a receiver whose proxy
	// crashed still counts as live for at-most-once (default 10s).
	PresenceTTL time.Duration `yaml:"presence_ttl,omitempty"`
	// AckWait is how long an at-least-once message may stay unacknowledged
	// before the messaging slot delivers it again (default 2s).
	AckWait time.Duration `yaml:"ack_wait,omitempty"`
	// ExpiryGrace is how long after its expiry the registry slot keeps a
	// record before its own TTL removes it (default 2s). The record's
	// expires_at decides whether an identity is live; the slot's TTL only
	// collects the garbage, so expiry does not depend on the slot's clock.
	ExpiryGrace time.Duration `yaml:"expiry_grace,omitempty"`
	// MaxFanout bounds the publish calls one multicast has in flight
	// (default 64).
	MaxFanout int `yaml:"max_fanout,omitempty"`
	// MaxTTL is the longest registration TTL accepted (default 24h).
	MaxTTL time.Duration `yaml:"max_ttl,omitempty"`
	// FilterMaxNodes bounds the nodes of one Enumerate or Multicast filter,
	// of every kind (default and most filter.MaxNodes): a filter over it is
	// InvalidArgument before it is walked.
	FilterMaxNodes int `yaml:"filter_max_nodes,omitempty"`
	// FilterMaxBytes bounds a filter's encoded size (default and most
	// filter.MaxFilterBytes).
	FilterMaxBytes int `yaml:"filter_max_bytes,omitempty"`
	// Schema constrains the metadata of every registration (nil: any).
	Schema *Schema `yaml:"schema,omitempty"`
}

// Schema constrains registration metadata. A violation is InvalidArgument
// naming the field ("metadata.floor").
type Schema struct {
	// Fields are the known fields by name.
	Fields map[string]Field `yaml:"fields,omitempty"`
	// Closed refuses fields that Fields does not list.
	Closed bool `yaml:"closed,omitempty"`
}

// FieldType is the type a schema field must have.
type FieldType string

// The field types of a schema.
const (
	TypeString FieldType = "string"
	TypeInt    FieldType = "int"
	TypeFloat  FieldType = "float"
	// TypeNumber accepts an int or a float.
	TypeNumber FieldType = "number"
	TypeBool   FieldType = "bool"
	// TypeList is a list of strings.
	TypeList FieldType = "list"
)

// Field constrains one metadata field.
type Field struct {
	// Type is required: string, int, float, number, bool or list.
	Type FieldType `yaml:"type"`
	// Required fields must be present in every registration.
	Required bool `yaml:"required,omitempty"`
	// MaxLength bounds a string's bytes or a list's elements (0: the
	// registry's general limits only).
	MaxLength int `yaml:"max_length,omitempty"`
	// Enum lists the values a string field may take (empty: any).
	Enum []string `yaml:"enum,omitempty"`
}

// Defaults of [Config].
const (
	DefaultPresenceTTL = 10 * time.Second
	DefaultAckWait     = 2 * time.Second
	DefaultExpiryGrace = 2 * time.Second
	DefaultMaxFanout   = 64
	DefaultMaxTTL      = 24 * time.Hour
)

// WithDefaults returns c with every zero field set to its default for
// namespace ns.
func (c Config) WithDefaults(ns string) Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = "prism-registry/" + ns + "/"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "prism-registry/" + ns + "/"
	}
	if c.PresenceTTL == 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.ExpiryGrace == 0 {
		c.ExpiryGrace = DefaultExpiryGrace
	}
	if c.MaxFanout == 0 {
		c.MaxFanout = DefaultMaxFanout
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.FilterMaxNodes == 0 {
		c.FilterMaxNodes = filter.MaxNodes
	}
	if c.FilterMaxBytes == 0 {
		c.FilterMaxBytes = filter.MaxFilterBytes
	}
	return c
}

// Validate checks c and returns every problem, one per line, each naming
// its field ("schema.fields.floor.type: ...").
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	for _, p := range []struct{ name, v string }{{"key_prefix", c.KeyPrefix}, {"topic_prefix", c.TopicPrefix}} {
		switch {
		case len(p.v) > 256:
			add(p.name, "%d bytes is longer than 256", len(p.v))
		case !utf8.ValidString(p.v) || strings.ContainsFunc(p.v, isControl):
			add(p.name, "must be UTF-8 without control characters")
		}
	}
	if c.MaxIdentities < 0 {
		add("max_identities", "must not be negative, got %d", c.MaxIdentities)
	}
	if c.PresenceTTL < 0 || (c.PresenceTTL > 0 && c.PresenceTTL < 300*time.Millisecond) {
		add("presence_ttl", "must be at least 300ms, got %v", c.PresenceTTL)
	}
	if c.AckWait < 0 || (c.AckWait > 0 && (c.AckWait < 100*time.Millisecond || c.AckWait > 12*time.Hour)) {
		add("ack_wait", "must be 100ms to 12h, got %v", c.AckWait)
	}
	if c.ExpiryGrace < 0 {
		add("expiry_grace", "must not be negative, got %v", c.ExpiryGrace)
	}
	if c.MaxFanout < 0 || c.MaxFanout > 4096 {
		add("max_fanout", "must be 1 to 4096, got %d", c.MaxFanout)
	}
	if c.MaxTTL < 0 {
		add("max_ttl", "must not be negative, got %v", c.MaxTTL)
	}
	if c.FilterMaxNodes < 0 || c.FilterMaxNodes > filter.MaxNodes {
		add("filter_max_nodes", "must be 1 to %d, got %d", filter.MaxNodes, c.FilterMaxNodes)
	}
	if c.FilterMaxBytes < 0 || c.FilterMaxBytes > filter.MaxFilterBytes {
		add("filter_max_bytes", "must be 1 to %d, got %d", filter.MaxFilterBytes, c.FilterMaxBytes)
	}
	if c.Schema != nil {
		names := make([]string, 0, len(c.Schema.Fields))
		for n := range c.Schema.Fields {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			f := c.Schema.Fields[n]
			at := "schema.fields." + n
			if err := checkFieldName(n); err != nil {
				add(at, "%v", err)
			}
			switch f.Type {
			case TypeString, TypeInt, TypeFloat, TypeNumber, TypeBool, TypeList:
			case "":
				add(at+".type", "is required: one of string, int, float, number, bool, list")
			default:
				add(at+".type", "%q is not one of string, int, float, number, bool, list", f.Type)
			}
			if f.MaxLength < 0 {
				add(at+".max_length", "must not be negative, got %d", f.MaxLength)
			}
			if f.MaxLength > 0 && f.Type != TypeString && f.Type != TypeList {
				add(at+".max_length", "applies to string and list fields, not %s", f.Type)
			}
			if len(f.Enum) > 0 && f.Type != TypeString {
				add(at+".enum", "applies to string fields, not %s", f.Type)
			}
		}
	}
	return errors.Join(errs...)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
