package backend_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/harness/backend"
)

// TestEmbeddedRedisTTLFollowsTheClock checks that the embedded Redis counts
// a TTL down from when it was set and answers PTTL as a real server would:
// within the bounds the times around the SET and the PTTL allow (give or
// take 2 ms for whole milliseconds), whenever the clock's ticker last ran.
// Shown red against the ticker alone, which was up to a tick (10 ms) off
// either way.
func TestEmbeddedRedisTTLFollowsTheClock(t *testing.T) {
	inst := start(t, backend.Redis, options(t, backend.Embedded))
	c := redis.NewClient(&redis.Options{Addr: inst.Info().Address, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { c.Close() })
	ctx := ctxTimeout(t, 30*time.Second)
	const life = time.Second
	for i := range 10 {
		key := "ttl-clock-" + string(rune('a'+i))
		sent := time.Now()
		if err := c.Set(ctx, key, "v", life).Err(); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		time.Sleep(time.Duration(3+7*i) * time.Millisecond) // land at different points between ticks
		asked := time.Now()
		left, err := c.PTTL(ctx, key).Result()
		answered := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		lo := life - answered.Sub(sent) - 2*time.Millisecond
		hi := life - asked.Sub(done) + 2*time.Millisecond
		if left < lo || left > hi {
			t.Errorf("PTTL %v after %v: got %v, want within [%v, %v]", key, asked.Sub(sent).Round(time.Millisecond), left, lo, hi)
		}
	}
}
