package redis_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
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

// TestCallsQueueForABusyPoolWithinTheirDeadline holds the only pooled
// connection for 3 s and checks that a Get with a 10 s deadline waits for it
// and succeeds, instead of failing with Unavailable when go-redis's default
// pool timeout (read_timeout + 1 s) ends first.
func TestCallsQueueForABusyPoolWithinTheirDeadline(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), map[string]any{"pool_size": 1.0}, nil)
	ctx := testCtx(t, 10*time.Second)
	client := redis.ClientOf(d)
	held := make(chan error, 1)
	go func() { held <- client.BLPop(ctx, 3*time.Second, "block").Err() }()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if st := client.PoolStats(); st.TotalConns-st.IdleConns >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("BLPOP did not take the connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if _, err := d.Get(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get while the only connection was busy for 3 s = %v after %v, want ErrNotFound once it was free", err, time.Since(start).Round(time.Millisecond))
	}
	<-held
}
