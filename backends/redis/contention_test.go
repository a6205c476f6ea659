package redis_test

import (
	"testing"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk/sdktest"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// TestServedUnderContention serves the driver with the SDK and puts it under
// the suite's contention load, against miniredis and against a redis-server
// from PATH (skipped without one); under -race (task test) a data race in the
// driver, its pool or the SDK fails it.
func TestServedUnderContention(t *testing.T) {
	t.Run("miniredis", func(t *testing.T) {
		conn := sdktest.Serve(t, redis.New(), map[string]any{"address": startMiniredis(t).Addr()})
		sdktest.ContendKeyValue(t, keyvaluev1.NewKeyValueClient(conn), "contention/", sdktest.Load{})
	})
	t.Run("redis-server", func(t *testing.T) {
		conn := sdktest.Serve(t, redis.New(), map[string]any{"address": startRedisServer(t)})
		sdktest.ContendKeyValue(t, keyvaluev1.NewKeyValueClient(conn), "contention/", sdktest.Load{})
	})
}
