package redis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

// testCtx returns a context that ends with the test or after d.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// newDriver initialises a driver against addr with extra config values and
// credentials, and closes it when the test ends.
func newDriver(t *testing.T, addr string, values map[string]any, creds map[string]string) *redis.Driver {
	t.Helper()
	d := redis.New()
	if err := d.Init(testCtx(t, 5*time.Second), config(addr, values, creds)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

func config(addr string, values map[string]any, creds map[string]string) sdk.Config {
	v := map[string]any{"address": addr}
	for k, x := range values {
		v[k] = x
	}
	return sdk.Config{Values: v, Credentials: creds, Namespace: "test"}
}

// startMiniredis runs a miniredis on 127.0.0.1 for the test.
func startMiniredis(t *testing.T) *miniredis.Miniredis {
	t.Helper()
	return miniredis.RunT(t)
}

// freeAddr returns a 127.0.0.1 address nothing listens on (it did a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// startRedisServer runs a real redis-server from PATH on a free 127.0.0.1
// port with the extra arguments, or skips the test when there is none.
func startRedisServer(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH; the miniredis tests cover the driver")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	all := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)
	cmd := exec.Command(bin, all...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not accept connections within 5s", addr)
	return ""
}

// configField returns the field of a *sdk.ConfigError, or "" for other errors.
func configField(err error) string {
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		return ce.Field
	}
	return ""
}

func key(i int) string { return fmt.Sprintf("%05d", i) }
