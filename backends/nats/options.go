package nats

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
)

// MaxPayloadBytesCeiling is the largest max_payload_bytes accepted: a
// delivered message must fit in one gRPC message of the SDK.
const MaxPayloadBytesCeiling = 32 << 20

// Options configure a [Driver]. Init fills them from the config document;
// in-process users may call [Driver.Configure] directly. Start from
// [DefaultOptions]: the zero value is not valid.
type Options struct {
	// URL is the server, "nats://host:port" ("tls://" for TLS with the
	// system's roots), or several separated by commas. Required. User info
	// in the URL is accepted but never shown; prefer credentials.
	URL string
	// Name is the client connection name the server shows.
	Name string
	// SubjectPrefix starts every subject: a topic's messages travel on
	// "<prefix>.t.<topic encoded>". Namespaces sharing a server use
	// different prefixes.
	SubjectPrefix string
	// Stream is the JetStream stream that keeps messages for durable
	// consumers; the plugin creates or updates it in Init and owns it.
	Stream string
	// StreamMaxAge and StreamMaxBytes bound what the stream keeps (the
	// oldest messages go first); StreamReplicas is its replica count.
	StreamMaxAge   time.Duration
	StreamMaxBytes int64
	StreamReplicas int
	// PayloadBucket is the JetStream object store that carries payloads too
	// large for one NATS message; objects expire after StreamMaxAge.
	PayloadBucket string
	// AckWait is the ack deadline of durable subscriptions that ask for none.
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged deliveries per durable consumer.
	MaxAckPending int
	// ConnectTimeout bounds one connection attempt; RequestTimeout bounds
	// JetStream API calls, publish acknowledgements and payload fetches when
	// the caller's context has no earlier deadline.
	ConnectTimeout time.Duration
	RequestTimeout time.Duration
	// ReconnectWait is the first delay between reconnection attempts; it
	// doubles up to ReconnectWaitMax. The client reconnects forever.
	ReconnectWait    time.Duration
	ReconnectWaitMax time.Duration
	// MaxTopicBytes and MaxPayloadBytes are the limits the SDK enforces.
	MaxTopicBytes   int64
	MaxPayloadBytes int64
	// BufferMessages and BufferBytes bound each subscription's buffer in the
	// plugin (the slow-consumer policy is drop-oldest).
	BufferMessages int
	BufferBytes    int64
}

// DefaultOptions returns the options a driver starts with; URL is empty and
// must be set.
func DefaultOptions() Options {
	return Options{
		Name:             "prism-nats",
		SubjectPrefix:    "prism",
		Stream:           "PRISM",
		StreamMaxAge:     24 * time.Hour,
		StreamMaxBytes:   1 << 30,
		StreamReplicas:   1,
		PayloadBucket:    "PRISM_PAYLOADS",
		AckWait:          30 * time.Second,
		MaxAckPending:    1000,
		ConnectTimeout:   2 * time.Second,
		RequestTimeout:   5 * time.Second,
		ReconnectWait:    100 * time.Millisecond,
		ReconnectWaitMax: 2 * time.Second,
		MaxTopicBytes:    sdk.DefaultMaxTopicBytes,
		MaxPayloadBytes:  sdk.DefaultMaxPayloadBytes,
		BufferMessages:   1024,
		BufferBytes:      8 << 20,
	}
}

// Credentials authenticate the driver to NATS: User and Password, or Token.
// Their String form never shows a secret.
type Credentials struct {
	User     string
	Password string
	Token    string
}

// String implements fmt.Stringer without secrets.
func (c Credentials) String() string {
	switch {
	case c.Token != "":
		return "token [redacted]"
	case c.User != "":
		return fmt.Sprintf("user %q, password [redacted]", c.User)
	}
	return "none"
}

// GoString implements fmt.GoStringer without secrets.
func (c Credentials) GoString() string { return "nats.Credentials{" + c.String() + "}" }

func parseConfig(cfg sdk.Config) (Options, Credentials, error) {
	o := DefaultOptions()
	for field, v := range cfg.Values {
		var err error
		switch field {
		case "url":
			o.URL, err = str(field, v, true)
		case "name":
			o.Name, err = str(field, v, true)
		case "subject_prefix":
			if o.SubjectPrefix, err = str(field, v, true); err == nil {
				err = validPrefix(field, o.SubjectPrefix)
			}
		case "stream":
			if o.Stream, err = str(field, v, true); err == nil {
				err = validJSName(field, o.Stream)
			}
		case "payload_bucket":
			if o.PayloadBucket, err = str(field, v, true); err == nil {
				err = validJSName(field, o.PayloadBucket)
			}
		case "stream_max_age":
			o.StreamMaxAge, err = duration(field, v)
		case "stream_max_bytes":
			o.StreamMaxBytes, err = integer(field, v, 1<<20, 1<<50)
		case "stream_replicas":
			var n int64
			n, err = integer(field, v, 1, 5)
			o.StreamReplicas = int(n)
		case "ack_wait":
			if o.AckWait, err = duration(field, v); err == nil && (o.AckWait < sdk.MinAckWait || o.AckWait > sdk.MaxAckWait) {
				err = sdk.InvalidConfig(field, "must be from %v to %v, got %v", sdk.MinAckWait, sdk.MaxAckWait, o.AckWait)
			}
		case "max_ack_pending":
			var n int64
			n, err = integer(field, v, 1, 1_000_000)
			o.MaxAckPending = int(n)
		case "connect_timeout":
			o.ConnectTimeout, err = duration(field, v)
		case "request_timeout":
			o.RequestTimeout, err = duration(field, v)
		case "reconnect_wait":
			o.ReconnectWait, err = duration(field, v)
		case "reconnect_wait_max":
			o.ReconnectWaitMax, err = duration(field, v)
		case "max_topic_bytes":
			o.MaxTopicBytes, err = integer(field, v, 16, 1024)
		case "max_payload_bytes":
			o.MaxPayloadBytes, err = integer(field, v, 1, MaxPayloadBytesCeiling)
		case "buffer_messages":
			var n int64
			n, err = integer(field, v, 1, 1_000_000)
			o.BufferMessages = int(n)
		case "buffer_bytes":
			o.BufferBytes, err = integer(field, v, 1<<10, 1<<34)
		default:
			err = sdk.InvalidConfig(field, "unknown field (known: url, name, subject_prefix, stream, stream_max_age, "+
				"stream_max_bytes, stream_replicas, payload_bucket, ack_wait, max_ack_pending, connect_timeout, "+
				"request_timeout, reconnect_wait, reconnect_wait_max, max_topic_bytes, max_payload_bytes, "+
				"buffer_messages, buffer_bytes)")
		}
		if err != nil {
			return Options{}, Credentials{}, err
		}
	}
	if err := o.validate(); err != nil {
		return Options{}, Credentials{}, err
	}
	cred, err := parseCredentials(cfg.Credentials)
	if err != nil {
		return Options{}, Credentials{}, err
	}
	return o, cred, nil
}

// validate checks options that Configure receives directly too.
func (o Options) validate() error {
	if o.URL == "" {
		return sdk.InvalidConfig("url", "is required: the NATS server, e.g. \"nats://127.0.0.1:4222\"")
	}
	for _, u := range strings.Split(o.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" {
			return sdk.InvalidConfig("url", "must be nats://host:port (or several separated by commas), got %q", redactURL(u))
		}
		switch p.Scheme {
		case "nats", "tls":
		default:
			return sdk.InvalidConfig("url", "must use the scheme nats:// or tls://, got %q", redactURL(u))
		}
	}
	switch {
	case o.ReconnectWaitMax < o.ReconnectWait:
		return sdk.InvalidConfig("reconnect_wait_max", "must be at least reconnect_wait (%v), got %v", o.ReconnectWait, o.ReconnectWaitMax)
	case o.MaxPayloadBytes <= 0 || o.MaxPayloadBytes > MaxPayloadBytesCeiling:
		return sdk.InvalidConfig("max_payload_bytes", "must be from 1 to %d, got %d", MaxPayloadBytesCeiling, o.MaxPayloadBytes)
	case o.Name == "":
		return sdk.InvalidConfig("name", "must not be empty")
	}
	if err := validPrefix("subject_prefix", o.SubjectPrefix); err != nil {
		return err
	}
	if err := validJSName("stream", o.Stream); err != nil {
		return err
	}
	return validJSName("payload_bucket", o.PayloadBucket)
}

func parseCredentials(m map[string]string) (Credentials, error) {
	var c Credentials
	for k, v := range m {
		switch k {
		case "user":
			c.User = v
		case "password":
			c.Password = v
		case "token":
			c.Token = v
		default:
			return Credentials{}, sdk.InvalidConfig("credentials."+k, "unknown credential (known: user, password, token)")
		}
	}
	switch {
	case c.Token != "" && (c.User != "" || c.Password != ""):
		return Credentials{}, sdk.InvalidConfig("credentials.token", "is given together with user/password; give one or the other")
	case c.User != "" && c.Password == "":
		return Credentials{}, sdk.InvalidConfig("credentials.password", "is empty but user %q is given", c.User)
	case c.User == "" && c.Password != "":
		return Credentials{}, sdk.InvalidConfig("credentials.user", "is empty but a password is given")
	}
	return c, nil
}

// validPrefix accepts subject tokens of letters, digits, '-' and '_'
// separated by single dots.
func validPrefix(field, p string) error {
	if p == "" || len(p) > 64 {
		return sdk.InvalidConfig(field, "must be 1 to 64 bytes, got %d", len(p))
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || !isName(tok) {
			return sdk.InvalidConfig(field, "must be NATS subject tokens of letters, digits, '-' and '_' separated by '.', got %q", p)
		}
	}
	return nil
}

// validJSName accepts a JetStream stream or bucket name.
func validJSName(field, n string) error {
	if n == "" || len(n) > 64 || !isName(n) {
		return sdk.InvalidConfig(field, "must be 1 to 64 letters, digits, '-' or '_', got %q", n)
	}
	return nil
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func str(field string, v any, required bool) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", sdk.InvalidConfig(field, "must be a string, got %T", v)
	}
	if required && s == "" {
		return "", sdk.InvalidConfig(field, "must not be empty")
	}
	return s, nil
}

func duration(field string, v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, sdk.InvalidConfig(field, "must be a duration string such as \"1s\" or \"500ms\", got %T", v)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, sdk.InvalidConfig(field, "must be a positive duration such as \"1s\" or \"500ms\", got %q", s)
	}
	return d, nil
}

// integer accepts a JSON number without a fraction (or a Go integer from
// in-process callers) within [lo, hi].
func integer(field string, v any, lo, hi int64) (int64, error) {
	var n int64
	switch x := v.(type) {
	case float64:
		if x != float64(int64(x)) {
			return 0, sdk.InvalidConfig(field, "must be an integer from %d to %d, got %v", lo, hi, x)
		}
		n = int64(x)
	case int:
		n = int64(x)
	case int64:
		n = x
	default:
		return 0, sdk.InvalidConfig(field, "must be an integer from %d to %d, got %T", lo, hi, v)
	}
	if n < lo || n > hi {
		return 0, sdk.InvalidConfig(field, "must be an integer from %d to %d, got %d", lo, hi, n)
	}
	return n, nil
}

// redactURL removes user info from a URL (or a comma-separated list).
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("[redacted]")
			parts[i] = u.String()
		} else if err != nil && strings.Contains(p, "@") {
			parts[i] = "[unparsable url redacted]"
		}
	}
	return strings.Join(parts, ",")
}
