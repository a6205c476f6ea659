package sdk

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Readers of typed fields of a plugin's Initialize config (a JSON-like
// document: numbers arrive as float64), each refusing a bad value with
// InvalidConfig naming the field and saying what was wanted.

// ConfigAddress reads a host:port string; what and example fill the
// message for an empty one ("the Redis server", "127.0.0.1:6379").
func ConfigAddress(field string, v any, what, example string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", InvalidConfig(field, "must be a string host:port, got %s", DescribeConfigValue(v))
	}
	if s == "" {
		return "", InvalidConfig(field, "is required: %s as host:port, e.g. %q", what, example)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", InvalidConfig(field, "must be host:port, got %q", s)
	}
	if host == "" {
		return "", InvalidConfig(field, "has no host in %q; write e.g. \"127.0.0.1%s\"", s, s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", InvalidConfig(field, "has port %q; want a number from 1 to 65535", port)
	}
	return s, nil
}

// ConfigInt reads a JSON number (float64) without a fraction, or a Go
// integer from in-process callers, within [lo, hi]; want says what is
// wanted ("a number from 1 to 1000").
func ConfigInt(field string, v any, lo, hi int, want string) (int, error) {
	var n int64
	switch x := v.(type) {
	case float64:
		if x != float64(int64(x)) {
			return 0, InvalidConfig(field, "must be %s, got %v", want, x)
		}
		n = int64(x)
	case int:
		n = int64(x)
	case int64:
		n = x
	default:
		return 0, InvalidConfig(field, "must be %s, got %s", want, DescribeConfigValue(v))
	}
	if n < int64(lo) || n > int64(hi) {
		return 0, InvalidConfig(field, "must be %s, got %d", want, n)
	}
	return int(n), nil
}

// ConfigDuration reads a Go duration string; a positive one, or also 0
// when zeroOK.
func ConfigDuration(field string, v any, zeroOK bool) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, InvalidConfig(field, "must be a duration string such as \"1s\" or \"500ms\", got %s", DescribeConfigValue(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		return 0, InvalidConfig(field, "must be a positive duration such as \"1s\" or \"500ms\", got %q", s)
	}
	return d, nil
}

// DescribeConfigValue names a config value's JSON type for error messages.
func DescribeConfigValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case float64, int, int64:
		return fmt.Sprintf("number %v", x)
	case string:
		return fmt.Sprintf("string %q", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
