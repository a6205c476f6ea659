package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

func TestInitRejectsBadConfig(t *testing.T) {
	m := startMiniredis(t)
	addr := m.Addr()
	tests := []struct {
		name   string
		values map[string]any
		creds  map[string]string
		field  string
	}{
		{"missing address", map[string]any{}, nil, "address"},
		{"empty address", map[string]any{"address": ""}, nil, "address"},
		{"address not a string", map[string]any{"address": 6379.0}, nil, "address"},
		{"address without port", map[string]any{"address": "127.0.0.1"}, nil, "address"},
		{"address without host", map[string]any{"address": ":6379"}, nil, "address"},
		{"address with bad port", map[string]any{"address": "127.0.0.1:http"}, nil, "address"},
		{"address with port 0", map[string]any{"address": "127.0.0.1:0"}, nil, "address"},
		{"unknown field", map[string]any{"address": addr, "adress": "x"}, nil, "adress"},
		{"db negative", map[string]any{"address": addr, "db": -1.0}, nil, "db"},
		{"db fraction", map[string]any{"address": addr, "db": 1.5}, nil, "db"},
		{"db string", map[string]any{"address": addr, "db": "1"}, nil, "db"},
		{"pool_size zero", map[string]any{"address": addr, "pool_size": 0.0}, nil, "pool_size"},
		{"pool_size bool", map[string]any{"address": addr, "pool_size": true}, nil, "pool_size"},
		{"dial_timeout number", map[string]any{"address": addr, "dial_timeout": 2.0}, nil, "dial_timeout"},
		{"dial_timeout garbage", map[string]any{"address": addr, "dial_timeout": "soon"}, nil, "dial_timeout"},
		{"read_timeout zero", map[string]any{"address": addr, "read_timeout": "0s"}, nil, "read_timeout"},
		{"write_timeout negative", map[string]any{"address": addr, "write_timeout": "-1s"}, nil, "write_timeout"},
		{"max_retries below -1", map[string]any{"address": addr, "max_retries": -2.0}, nil, "max_retries"},
		{"max_retries string", map[string]any{"address": addr, "max_retries": "3"}, nil, "max_retries"},
		{"tls string", map[string]any{"address": addr, "tls": "true"}, nil, "tls"},
		{"key_prefix number", map[string]any{"address": addr, "key_prefix": 1.0}, nil, "key_prefix"},
		{"max_key_bytes zero", map[string]any{"address": addr, "max_key_bytes": 0.0}, nil, "max_key_bytes"},
		{"max_value_bytes above 512 MiB", map[string]any{"address": addr, "max_value_bytes": float64(512<<20 + 1)}, nil, "max_value_bytes"},
		{"max_value_bytes null", map[string]any{"address": addr, "max_value_bytes": nil}, nil, "max_value_bytes"},
		{"unknown credential", map[string]any{"address": addr}, map[string]string{"token": "t0ken-value"}, "credentials.token"},
		{"username without password", map[string]any{"address": addr}, map[string]string{"username": "alice"}, "credentials.password"},
		{"username with empty password", map[string]any{"address": addr}, map[string]string{"username": "alice", "password": ""}, "credentials.password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := redis.New()
			defer d.Close(context.Background())
			err := d.Init(testCtx(t, 5*time.Second), sdk.Config{Values: tc.values, Credentials: tc.creds})
			if got := configField(err); got != tc.field {
				t.Fatalf("Init error = %v; got config field %q, want %q", err, got, tc.field)
			}
			if strings.Contains(err.Error(), "t0ken-value") {
				t.Errorf("error %q shows a credential's value", err)
			}
		})
	}
}

func TestInitAcceptsEveryField(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), map[string]any{
		"db":              3.0,
		"pool_size":       4.0,
		"dial_timeout":    "500ms",
		"read_timeout":    "2s",
		"write_timeout":   "2s",
		"max_retries":     2.0,
		"tls":             false,
		"key_prefix":      "ns:",
		"max_key_bytes":   100.0,
		"max_value_bytes": 2048.0,
	}, nil)
	if got, want := d.Limits(), (sdk.Limits{MaxKeyBytes: 100, MaxValueBytes: 2048}); got != want {
		t.Errorf("Limits() = %+v, want %+v", got, want)
	}
	ctx := testCtx(t, 5*time.Second)
	if err := d.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	m.Select(3)
	if got, err := m.Get("ns:k"); err != nil || got != "v" {
		t.Errorf("miniredis db 3 holds ns:k = %q, %v; want \"v\"", got, err)
	}
}

func TestLimitsDefaults(t *testing.T) {
	want := sdk.Limits{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20}
	if got := redis.New().Limits(); got != want {
		t.Errorf("Limits() before Init = %+v, want %+v", got, want)
	}
	m := startMiniredis(t)
	if got := newDriver(t, m.Addr(), nil, nil).Limits(); got != want {
		t.Errorf("Limits() after Init = %+v, want %+v", got, want)
	}
}

func TestDescribe(t *testing.T) {
	d := redis.New()
	desc := d.Describe()
	if desc.Name != "redis" || desc.Version != redis.Version || desc.Info["backend"] != "redis" {
		t.Errorf("Describe() = %+v, want name redis, version %s, info backend=redis", desc, redis.Version)
	}
	if _, ok := desc.Info["server_version"]; ok {
		t.Errorf("Describe() before Init reports server_version %q", desc.Info["server_version"])
	}
}

func TestCapabilities(t *testing.T) {
	var got []string
	for _, c := range sdk.Capabilities(redis.New()) {
		got = append(got, string(c))
	}
	want := "keyvalue.basic keyvalue.ttl keyvalue.scan keyvalue.batch pubsub.basic pubsub.ordered auth.backend-credentials auth.rotation"
	if strings.Join(got, " ") != want {
		t.Errorf("capabilities = %v, want %s", got, want)
	}
}

func TestCredentialsNeverPrintThePassword(t *testing.T) {
	c := redis.Credentials{Username: "alice", Password: "hunter2-secret"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("creds", "c", c)
	for _, s := range []string{
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %q %x %d", c, c, c, c, c, c, c),
		fmt.Sprintf("%v", &c), fmt.Sprintf("%+v", struct{ C redis.Credentials }{c}), logged.String(),
	} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("printed credentials show the password: %s", s)
		}
		if !strings.Contains(s, "alice") {
			t.Errorf("printed credentials do not name the user: %s", s)
		}
	}
}
