package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
)

// MaxValueBytesCeiling is the largest max_value_bytes accepted (bytea's own
// limit is 1 GiB; a value travels in one gRPC message and one protocol
// message, so it stays well below).
const MaxValueBytesCeiling = 256 << 20

// MaxKeyBytesCeiling is the largest max_key_bytes accepted: the key is the
// primary key, and a btree index entry holds at most 2704 bytes.
const MaxKeyBytesCeiling = 2048

// DefaultUsername is the role used when the credentials name none.
const DefaultUsername = "postgres"

// Options configure a [Driver]. Init fills them from the config document;
// in-process users may call [Driver.Configure] directly. Start from
// [DefaultOptions]: the zero value is not valid.
type Options struct {
	// Address is the server as host:port. Required.
	Address string
	// Database is the database to connect to.
	Database string
	// Schema and Table name the table the keys live in; the driver creates
	// the table if it is missing (the schema must exist). Init's default
	// table is [TableFor] the namespace; DefaultOptions' is "prism_kv".
	Schema string
	Table  string
	// PoolSize is the most connections the pool keeps; Health reports
	// Degraded when 90% of them are in use.
	PoolSize int
	// ConnectTimeout bounds one connection attempt when the caller's
	// context has no earlier deadline.
	ConnectTimeout time.Duration
	// SSLMode is libpq's sslmode: disable, prefer, require, verify-ca or
	// verify-full.
	SSLMode string
	// SweepInterval is how often expired rows are deleted to reclaim space;
	// 0 turns the sweeper off. Expiry is exact without it: every read
	// checks expires_at.
	SweepInterval time.Duration
	// MaxKeyBytes and MaxValueBytes are the limits the SDK enforces before a
	// request reaches the driver.
	MaxKeyBytes   int64
	MaxValueBytes int64
}

// DefaultOptions returns the options a driver starts with; Address is empty
// and must be set.
func DefaultOptions() Options {
	return Options{
		Database:       "postgres",
		Schema:         "public",
		Table:          "prism_kv",
		PoolSize:       10,
		ConnectTimeout: 2 * time.Second,
		SSLMode:        "disable",
		SweepInterval:  time.Minute,
		MaxKeyBytes:    sdk.DefaultMaxKeyBytes,
		MaxValueBytes:  sdk.DefaultMaxValueBytes,
	}
}

// Credentials authenticate the driver to PostgreSQL. Their String,
// GoString, Format and LogValue forms never show the password.
type Credentials struct {
	// Username is the role; empty means [DefaultUsername].
	Username string
	// Password is the role's password.
	Password string
}

func (c Credentials) user() string {
	if c.Username == "" {
		return DefaultUsername
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
func (c Credentials) GoString() string { return "postgres.Credentials{" + c.String() + "}" }

// Format implements fmt.Formatter so that no verb prints the password.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, c.GoString())
		return
	}
	_, _ = io.WriteString(f, c.String())
}

// LogValue implements slog.LogValuer without the password.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

var knownFields = []string{
	"address", "connect_timeout", "database", "max_key_bytes", "max_value_bytes",
	"pool_size", "schema", "sslmode", "sweep_interval", "table",
}

var sslModes = []string{"disable", "prefer", "require", "verify-ca", "verify-full"}

// parseConfig turns the config document and credentials into Options.
func parseConfig(cfg sdk.Config) (Options, Credentials, error) {
	o := DefaultOptions()
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
	if _, ok := cfg.Values["table"]; !ok {
		o.Table = TableFor(cfg.Namespace)
	}
	if _, ok := cfg.Values["address"]; !ok {
		return Options{}, Credentials{}, sdk.InvalidConfig("address", "is required: the PostgreSQL server as host:port, e.g. \"127.0.0.1:5432\"")
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
	case "database":
		o.Database, err = name(field, v)
	case "schema":
		o.Schema, err = name(field, v)
	case "table":
		o.Table, err = name(field, v)
	case "pool_size":
		o.PoolSize, err = intField(field, v, 1, 10000, "an integer from 1 to 10000")
	case "connect_timeout":
		o.ConnectTimeout, err = duration(field, v, false)
	case "sweep_interval":
		o.SweepInterval, err = duration(field, v, true)
	case "sslmode":
		s, ok := v.(string)
		if !ok || !contains(sslModes, s) {
			return sdk.InvalidConfig(field, "must be one of %s, got %s", strings.Join(sslModes, ", "), describe(v))
		}
		o.SSLMode = s
	case "max_key_bytes":
		n, e := intField(field, v, 1, MaxKeyBytesCeiling, "a positive integer of at most 2048 (a btree index entry holds at most 2704 bytes)")
		o.MaxKeyBytes, err = int64(n), e
	case "max_value_bytes":
		n, e := intField(field, v, 1, MaxValueBytesCeiling, "a positive integer of at most 268435456 (256 MiB)")
		o.MaxValueBytes, err = int64(n), e
	default:
		return sdk.InvalidConfig(field, "unknown field (known: %s)", strings.Join(knownFields, ", "))
	}
	return err
}

// validate checks options given to Configure directly.
func (o Options) validate() error {
	if _, err := address("address", o.Address); err != nil {
		return err
	}
	for field, v := range map[string]string{"database": o.Database, "schema": o.Schema, "table": o.Table} {
		if _, err := name(field, v); err != nil {
			return err
		}
	}
	switch {
	case o.PoolSize <= 0:
		return sdk.InvalidConfig("pool_size", "must be a positive integer, got %d", o.PoolSize)
	case o.ConnectTimeout <= 0:
		return sdk.InvalidConfig("connect_timeout", "must be positive, got %v", o.ConnectTimeout)
	case o.SweepInterval < 0:
		return sdk.InvalidConfig("sweep_interval", "must be 0 (off) or positive, got %v", o.SweepInterval)
	case !contains(sslModes, o.SSLMode):
		return sdk.InvalidConfig("sslmode", "must be one of %s, got %q", strings.Join(sslModes, ", "), o.SSLMode)
	case o.MaxKeyBytes <= 0 || o.MaxKeyBytes > MaxKeyBytesCeiling:
		return sdk.InvalidConfig("max_key_bytes", "must be from 1 to %d (a btree index entry holds at most 2704 bytes), got %d", MaxKeyBytesCeiling, o.MaxKeyBytes)
	case o.MaxValueBytes <= 0 || o.MaxValueBytes > MaxValueBytesCeiling:
		return sdk.InvalidConfig("max_value_bytes", "must be from 1 to %d, got %d", MaxValueBytesCeiling, o.MaxValueBytes)
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
			return Credentials{}, sdk.InvalidConfig("credentials."+k, "unknown credential (known: username, password)")
		}
	}
	if strings.ContainsRune(c.Username, 0) {
		return Credentials{}, sdk.InvalidConfig("credentials.username", "must not contain a NUL byte")
	}
	if strings.ContainsRune(c.Password, 0) {
		return Credentials{}, sdk.InvalidConfig("credentials.password", "must not contain a NUL byte")
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func name(field string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", sdk.InvalidConfig(field, "must be a string, got %s", describe(v))
	}
	// PostgreSQL truncates identifiers to NAMEDATALEN-1 = 63 bytes.
	if s == "" || len(s) > 63 || strings.ContainsRune(s, 0) {
		return "", sdk.InvalidConfig(field, "must be a PostgreSQL identifier of 1 to 63 bytes without NUL, got %q", s)
	}
	return s, nil
}

// The config field readers are the SDK's.

func address(field string, v any) (string, error) {
	return sdk.ConfigAddress(field, v, "the PostgreSQL server", "127.0.0.1:5432")
}

var (
	intField = sdk.ConfigInt
	describe = sdk.DescribeConfigValue
)

func duration(field string, v any, zeroOK bool) (time.Duration, error) {
	return sdk.ConfigDuration(field, v, zeroOK)
}

// TableFor is the table a plugin of namespace ns uses when the config names
// none: "prism_kv_<ns>" ("prism_kv" without a namespace), so namespaces
// sharing a database and schema keep their keys apart by default. A name
// longer than PostgreSQL's 63 bytes keeps its first 45 bytes and adds 8
// bytes of the namespace's SHA-256 in hex.
func TableFor(ns string) string {
	if ns == "" {
		return "prism_kv"
	}
	t := "prism_kv_" + ns
	if len(t) <= 63 && !strings.ContainsRune(t, 0) {
		return t
	}
	sum := sha256.Sum256([]byte(ns))
	head := strings.ToValidUTF8(strings.ReplaceAll(t[:45], "\x00", ""), "")
	return head + "_" + hex.EncodeToString(sum[:4])
}
