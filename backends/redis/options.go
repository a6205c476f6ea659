package redis

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/prism-suite/prism/backends/sdk"
)

// MaxValueBytesCeiling is the largest max_value_bytes accepted: Redis's own
// limit for a string value (proto-max-bulk-len's default).
const MaxValueBytesCeiling = 512 << 20

// Options configure a [Driver]. Init fills them from the config document;
// in-process users may call [Driver.Configure] directly. Start from
// [DefaultOptions]: the zero value is not valid.
type Options struct {
	// Address is the Redis server as host:port. Required unless Addresses
	// is given.
	Address string
	// Addresses, when given, are nodes of a Redis Cluster (host:port each;
	// the client learns the others from them): the driver then speaks
	// cluster (go-redis ClusterClient), and Address and DB must be unset.
	Addresses []string
	// DB is the logical database SELECTed on every connection.
	DB int
	// PoolSize is the number of connections the client keeps for concurrent
	// calls; Health reports Degraded when 90% of them are in use.
	PoolSize int
	// DialTimeout bounds one connection attempt; ReadTimeout and WriteTimeout
	// bound socket reads and writes when the caller's context has no earlier
	// deadline.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// MaxRetries is how many times a failed command is retried inside the
	// client. 0 (the default) and -1 both mean none: the SDK contract leaves
	// retries to the caller. Unlike go-redis, 0 does not mean "3".
	MaxRetries int
	// TLS enables TLS 1.2+ with the server name taken from Address's host,
	// verified against the system's root certificates.
	TLS bool
	// KeyPrefix is prepended to every key sent to Redis and stripped from
	// every key returned by Scan, so several namespaces can share a database.
	KeyPrefix string
	// MaxKeyBytes and MaxValueBytes are the limits the SDK enforces before a
	// request reaches the driver. MaxValueBytes is at most [MaxValueBytesCeiling].
	MaxKeyBytes   int64
	MaxValueBytes int64
	// TracerProvider, when not nil, gets a span per Redis command
	// (redisotel, without the command's arguments): Init sets it from
	// sdk.Config when the plugin traces.
	TracerProvider trace.TracerProvider
}

// DefaultOptions returns the options a driver starts with; Address is empty
// and must be set.
func DefaultOptions() Options {
	return Options{
		PoolSize:      10,
		DialTimeout:   2 * time.Second,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		MaxKeyBytes:   sdk.DefaultMaxKeyBytes,
		MaxValueBytes: sdk.DefaultMaxValueBytes,
	}
}

// Credentials authenticate the driver to Redis. Their String, GoString,
// Format and LogValue forms never show the password, so printing or logging
// them by mistake is safe.
type Credentials struct {
	// Username is the Redis ACL user; empty means the "default" user.
	Username string
	// Password is the user's password (AUTH / requirepass).
	Password string
}

// user names the ACL user the credentials authenticate as.
func (c Credentials) user() string {
	if c.Username == "" {
		return "default"
	}
	return c.Username
}

// String implements fmt.Stringer without the password.
func (c Credentials) String() string {
	pw := "none"
	if c.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("user %q, password %s", c.user(), pw)
}

// GoString implements fmt.GoStringer without the password.
func (c Credentials) GoString() string { return "redis.Credentials{" + c.String() + "}" }

// Format implements fmt.Formatter so that no verb (not even %d or %x) prints
// the password.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, c.GoString())
		return
	}
	_, _ = io.WriteString(f, c.String())
}

// LogValue implements slog.LogValuer without the password.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// cluster reports whether the options name a Redis Cluster.
func (o Options) cluster() bool { return len(o.Addresses) > 0 }

// where names the server(s) in messages.
func (o Options) where() string {
	if o.cluster() {
		return "cluster " + strings.Join(o.Addresses, ",")
	}
	return o.Address
}

// knownFields lists the config fields Init accepts, for error messages.
var knownFields = []string{
	"address", "addresses", "db", "dial_timeout", "key_prefix", "max_key_bytes", "max_retries",
	"max_value_bytes", "pool_size", "read_timeout", "tls", "write_timeout",
}

// parseConfig turns the config document and credentials into Options.
func parseConfig(cfg sdk.Config) (Options, Credentials, error) {
	o := DefaultOptions()
	// Walk fields in a fixed order so the first error reported is stable.
	fields := make([]string, 0, len(cfg.Values))
	for f := range cfg.Values {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, field := range fields {
		if err := o.set(field, cfg.Values[field]); err != nil {
			return Options{}, Credentials{}, err
		}
	}
	_, one := cfg.Values["address"]
	_, many := cfg.Values["addresses"]
	if one && many {
		return Options{}, Credentials{}, sdk.InvalidConfig("addresses", "is given with address: give address for one server or addresses for a cluster, not both")
	}
	if !one && !many {
		return Options{}, Credentials{}, sdk.InvalidConfig("address", "is required: the Redis server as host:port, e.g. \"127.0.0.1:6379\"")
	}
	cred, err := parseCredentials(cfg.Credentials)
	if err != nil {
		return Options{}, Credentials{}, err
	}
	return o, cred, nil
}

func (o *Options) set(field string, v any) error {
	var err error
	switch field {
	case "address":
		o.Address, err = address(field, v)
	case "addresses":
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return sdk.InvalidConfig(field, "must be a non-empty list of host:port (nodes of a Redis Cluster), got %s", describe(v))
		}
		o.Addresses = make([]string, len(list))
		for i, a := range list {
			if o.Addresses[i], err = address(fmt.Sprintf("%s[%d]", field, i), a); err != nil {
				return err
			}
		}
	case "db":
		o.DB, err = intField(field, v, 0, 1<<31-1, "a non-negative integer")
	case "pool_size":
		o.PoolSize, err = intField(field, v, 1, 1<<20, "a positive integer")
	case "max_retries":
		o.MaxRetries, err = intField(field, v, -1, 100, "an integer from -1 to 100 (0 or -1: no retries)")
	case "dial_timeout":
		o.DialTimeout, err = duration(field, v)
	case "read_timeout":
		o.ReadTimeout, err = duration(field, v)
	case "write_timeout":
		o.WriteTimeout, err = duration(field, v)
	case "tls":
		b, ok := v.(bool)
		if !ok {
			return sdk.InvalidConfig(field, "must be true or false, got %s", describe(v))
		}
		o.TLS = b
	case "key_prefix":
		s, ok := v.(string)
		if !ok {
			return sdk.InvalidConfig(field, "must be a string, got %s", describe(v))
		}
		o.KeyPrefix = s
	case "max_key_bytes":
		n, e := intField(field, v, 1, MaxValueBytesCeiling, "a positive integer of at most 536870912")
		o.MaxKeyBytes, err = int64(n), e
	case "max_value_bytes":
		n, e := intField(field, v, 1, MaxValueBytesCeiling, "a positive integer of at most 536870912 (512 MiB, Redis's limit)")
		o.MaxValueBytes, err = int64(n), e
	default:
		return sdk.InvalidConfig(field, "unknown field (known: %s)", strings.Join(knownFields, ", "))
	}
	return err
}

// validate checks options given to Configure directly; parseConfig's checks
// are stricter and name the same fields.
func (o Options) validate() error {
	if len(o.Addresses) > 0 {
		if o.Address != "" {
			return sdk.InvalidConfig("addresses", "is given with address: give one or the other")
		}
		for i, a := range o.Addresses {
			if _, err := address(fmt.Sprintf("addresses[%d]", i), a); err != nil {
				return err
			}
		}
		if o.DB != 0 {
			return sdk.InvalidConfig("db", "must be 0 with addresses: a Redis Cluster has only database 0, got %d", o.DB)
		}
	} else if _, err := address("address", o.Address); err != nil {
		return err
	}
	switch {
	case o.DB < 0:
		return sdk.InvalidConfig("db", "must be a non-negative integer, got %d", o.DB)
	case o.PoolSize <= 0:
		return sdk.InvalidConfig("pool_size", "must be a positive integer, got %d", o.PoolSize)
	case o.DialTimeout <= 0:
		return sdk.InvalidConfig("dial_timeout", "must be positive, got %v", o.DialTimeout)
	case o.ReadTimeout <= 0:
		return sdk.InvalidConfig("read_timeout", "must be positive, got %v", o.ReadTimeout)
	case o.WriteTimeout <= 0:
		return sdk.InvalidConfig("write_timeout", "must be positive, got %v", o.WriteTimeout)
	case o.MaxRetries < -1:
		return sdk.InvalidConfig("max_retries", "must be -1 or more, got %d", o.MaxRetries)
	case o.MaxKeyBytes <= 0:
		return sdk.InvalidConfig("max_key_bytes", "must be a positive integer, got %d", o.MaxKeyBytes)
	case o.MaxValueBytes <= 0 || o.MaxValueBytes > MaxValueBytesCeiling:
		return sdk.InvalidConfig("max_value_bytes", "must be from 1 to %d (512 MiB, Redis's limit), got %d", MaxValueBytesCeiling, o.MaxValueBytes)
	}
	return nil
}

func parseCredentials(m map[string]string) (Credentials, error) {
	var c Credentials
	for k, v := range m {
		switch k {
		case "username":
			c.Username = v
		case "password":
			c.Password = v
		default:
			// The name of a credential is not secret; its value is never shown.
			return Credentials{}, sdk.InvalidConfig("credentials."+k, "unknown credential (known: username, password)")
		}
	}
	if c.Username != "" && c.Password == "" {
		return Credentials{}, sdk.InvalidConfig("credentials.password",
			"is empty but username %q is given; Redis authenticates a user only with a password "+
				"(for an ACL user with nopass, give any non-empty password)", c.Username)
	}
	return c, nil
}

// The config field readers are the SDK's.

func address(field string, v any) (string, error) {
	return sdk.ConfigAddress(field, v, "the Redis server", "127.0.0.1:6379")
}

var (
	intField = sdk.ConfigInt
	describe = sdk.DescribeConfigValue
)

func duration(field string, v any) (time.Duration, error) { return sdk.ConfigDuration(field, v, false) }
