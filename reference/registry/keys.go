package registry

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// Limits of identities and metadata, whatever the schema says.
const (
	// MaxIdentityBytes is the longest identity.
	MaxIdentityBytes = 200
	// MaxFields is the most metadata fields of one identity.
	MaxFields = 64
	// MaxFieldNameBytes is the longest metadata field name.
	MaxFieldNameBytes = 128
	// MaxStringBytes is the longest string value.
	MaxStringBytes = 4096
	// MaxListValues is the most elements of a list value.
	MaxListValues = 100
	// MaxPageSize is the largest Enumerate page; DefaultPageSize is used when
	// the request gives none.
	MaxPageSize     = 1000
	DefaultPageSize = 100
)

// Key layout in the registry slot, under the namespace's KeyPrefix P:
//
//	P i/<esc(identity)>                 the record: a protobuf Identity
//	P p/<esc(identity)>/<owner>.<n>     a live receiver (presence), value <owner>
//	P a/<multicast id>/<esc(identity)>  an at-least-once acknowledgement
//	P d/<esc(identity)>                 the identity has a durable inbox
//	P v/i/                              the records' index version (index.go)
//	P v/p/                              the presence keys' index version
//
// esc keeps ASCII letters, digits, '.', '_' and '-' and writes every other
// byte as %XX, so it never produces '/': "p/<esc(a)>/" is never a prefix of
// another identity's presence keys, and keys are readable in a scan.
const (
	recordPart   = "i/"
	presencePart = "p/"
	ackPart      = "a/"
	durablePart  = "d/"
	versionPart  = "v/"
)

// escape is the injective, '/'-free encoding of an identity in keys.
func escape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// unescape reverses escape.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("unescape identity: truncated escape")
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", errors.New("unescape identity: bad escape")
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (c *Coordinator) recordKey(id string) string { return c.cfg.KeyPrefix + recordPart + escape(id) }
func (c *Coordinator) recordPrefix() string       { return c.cfg.KeyPrefix + recordPart }
func (c *Coordinator) presencePrefix() string     { return c.cfg.KeyPrefix + presencePart }
func (c *Coordinator) presenceOf(id string) string {
	return c.cfg.KeyPrefix + presencePart + escape(id) + "/"
}
func (c *Coordinator) ackPrefix(mc string) string  { return c.cfg.KeyPrefix + ackPart + mc + "/" }
func (c *Coordinator) durableKey(id string) string { return c.cfg.KeyPrefix + durablePart + escape(id) }

// identityOfRecordKey returns the identity a record key names.
func (c *Coordinator) identityOfRecordKey(key string) (string, error) {
	return unescape(strings.TrimPrefix(key, c.recordPrefix()))
}

// Topics on the messaging slot, under the namespace's TopicPrefix T:
//
//	T in/<b64(identity)>   the identity's at-most-once inbox
//	T dn/<b64(identity)>   its at-least-once inbox (durable consumer "inbox",
//	                       made by the first at-least-once multicast to it)
//	T ih/<b64(sha256)>     the at-most-once inbox of an identity whose
//	T dh/<b64(sha256)>     b64 form would exceed the slot's topic limit
//	T peer/<owner>         a proxy's control topic (liveness pings)
//
// b64 is unpadded base64url: injective and made of [A-Za-z0-9_-]. A hashed
// inbox is shared only by identities whose SHA-256 collide; even then every
// message names its target identity and Receive drops the ones for another.
const durableName = "inbox"

func (c *Coordinator) inboxTopic(id string, durable bool, maxTopic int) string {
	plain, hashed := "in/", "ih/"
	if durable {
		plain, hashed = "dn/", "dh/"
	}
	t := c.cfg.TopicPrefix + plain + base64.RawURLEncoding.EncodeToString([]byte(id))
	if len(t) <= maxTopic {
		return t
	}
	sum := sha256.Sum256([]byte(id))
	return c.cfg.TopicPrefix + hashed + base64.RawURLEncoding.EncodeToString(sum[:])
}

func (c *Coordinator) peerTopic(owner string) string { return c.cfg.TopicPrefix + "peer/" + owner }

// validateIdentity checks an identity; field names the request field.
func validateIdentity(field, id string) error {
	switch {
	case id == "":
		return status.Errorf(codes.InvalidArgument, "%s: must not be empty", field)
	case len(id) > MaxIdentityBytes:
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes exceeds the limit of %d bytes", field, len(id), MaxIdentityBytes)
	case !utf8.ValidString(id):
		return status.Errorf(codes.InvalidArgument, "%s: must be valid UTF-8", field)
	case strings.ContainsFunc(id, isControl):
		return status.Errorf(codes.InvalidArgument, "%s: must not contain control characters", field)
	}
	return nil
}

func checkFieldName(n string) error {
	switch {
	case n == "":
		return errors.New("a field name must not be empty")
	case len(n) > MaxFieldNameBytes:
		return fmt.Errorf("field name of %d bytes exceeds the limit of %d", len(n), MaxFieldNameBytes)
	case !utf8.ValidString(n) || strings.ContainsFunc(n, isControl):
		return errors.New("a field name must be UTF-8 without control characters")
	}
	return nil
}

// validateMetadata checks metadata against the general limits and the
// namespace's schema. Errors are InvalidArgument naming "metadata.<field>".
func validateMetadata(md map[string]*registryv1.Value, s *Schema) error {
	bad := func(field, format string, a ...any) error {
		return status.Errorf(codes.InvalidArgument, "metadata.%s: %s", field, fmt.Sprintf(format, a...))
	}
	if len(md) > MaxFields {
		return status.Errorf(codes.InvalidArgument, "metadata: %d fields exceeds the limit of %d", len(md), MaxFields)
	}
	for name, v := range md {
		if err := checkFieldName(name); err != nil {
			return status.Errorf(codes.InvalidArgument, "metadata: %v", err)
		}
		switch k := v.GetKind().(type) {
		case nil:
			return bad(name, "has no value")
		case *registryv1.Value_StringValue:
			if len(k.StringValue) > MaxStringBytes {
				return bad(name, "string of %d bytes exceeds the limit of %d", len(k.StringValue), MaxStringBytes)
			}
			if !utf8.ValidString(k.StringValue) {
				return bad(name, "must be valid UTF-8")
			}
		case *registryv1.Value_FloatValue:
			if math.IsNaN(k.FloatValue) || math.IsInf(k.FloatValue, 0) {
				return bad(name, "must be a finite number")
			}
		case *registryv1.Value_ListValue:
			vals := k.ListValue.GetValues()
			if len(vals) > MaxListValues {
				return bad(name, "list of %d values exceeds the limit of %d", len(vals), MaxListValues)
			}
			for i, e := range vals {
				if len(e) > MaxStringBytes || !utf8.ValidString(e) {
					return bad(fmt.Sprintf("%s[%d]", name, i), "must be valid UTF-8 of at most %d bytes", MaxStringBytes)
				}
			}
		}
	}
	if s == nil {
		return nil
	}
	for _, name := range sortedKeys(s.Fields) {
		f := s.Fields[name]
		v, ok := md[name]
		if !ok {
			if f.Required {
				return bad(name, "is required by the namespace's schema")
			}
			continue
		}
		if !typeMatches(f.Type, v) {
			return bad(name, "must be of type %s, got %s", f.Type, typeName(v))
		}
		switch k := v.GetKind().(type) {
		case *registryv1.Value_StringValue:
			if f.MaxLength > 0 && len(k.StringValue) > f.MaxLength {
				return bad(name, "%d bytes exceeds the schema's max_length %d", len(k.StringValue), f.MaxLength)
			}
			if len(f.Enum) > 0 && !contains(f.Enum, k.StringValue) {
				return bad(name, "%q is not one of %s", k.StringValue, strings.Join(f.Enum, ", "))
			}
		case *registryv1.Value_ListValue:
			if f.MaxLength > 0 && len(k.ListValue.GetValues()) > f.MaxLength {
				return bad(name, "%d values exceeds the schema's max_length %d", len(k.ListValue.GetValues()), f.MaxLength)
			}
		}
	}
	if s.Closed {
		for _, name := range sortedKeys(md) {
			if _, ok := s.Fields[name]; !ok {
				return bad(name, "is not a field of the namespace's schema")
			}
		}
	}
	return nil
}

func typeMatches(t FieldType, v *registryv1.Value) bool {
	switch v.GetKind().(type) {
	case *registryv1.Value_StringValue:
		return t == TypeString
	case *registryv1.Value_IntValue:
		return t == TypeInt || t == TypeNumber
	case *registryv1.Value_FloatValue:
		return t == TypeFloat || t == TypeNumber
	case *registryv1.Value_BoolValue:
		return t == TypeBool
	case *registryv1.Value_ListValue:
		return t == TypeList
	}
	return false
}

func typeName(v *registryv1.Value) string {
	switch v.GetKind().(type) {
	case *registryv1.Value_StringValue:
		return "string"
	case *registryv1.Value_IntValue:
		return "int"
	case *registryv1.Value_FloatValue:
		return "float"
	case *registryv1.Value_BoolValue:
		return "bool"
	case *registryv1.Value_ListValue:
		return "list"
	}
	return "nothing"
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
