package backend

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestNextTickBacksOffWithTheCostOfAnAdvance: the ticker of the embedded
// Redis keeps to ttlTick while an advance is cheap, and holds miniredis's
// lock at most ttlShare of the time when it is not (many keys to sort).
func TestNextTickBacksOffWithTheCostOfAnAdvance(t *testing.T) {
	for _, tc := range []struct{ cost, want time.Duration }{
		{0, ttlTick},
		{time.Millisecond, ttlTick},
		{ttlTick / 9, ttlTick},
		{5 * time.Millisecond, 45 * time.Millisecond},
		{20 * time.Millisecond, 180 * time.Millisecond},
	} {
		got := nextTick(tc.cost)
		if got != tc.want {
			t.Errorf("nextTick(%v) = %v, want %v", tc.cost, got, tc.want)
		}
		if share := float64(tc.cost) / float64(tc.cost+got); share > ttlShare+1e-9 {
			t.Errorf("nextTick(%v) = %v: the ticker would hold the lock %.0f%% of the time", tc.cost, got, share*100)
		}
	}
}

// TestAKeyExpiresWhenTheTickerIsLate: with the ticker not running at all (a
// loaded machine can starve its goroutine far past its tick), a Get after a
// key's TTL still finds it gone: a command advances the clock when an advance
// is due. Shown red without that: the Get found the key.
func TestAKeyExpiresWhenTheTickerIsLate(t *testing.T) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	clock := newTTLClock(m)
	clock.hook() // and no clock.run: the ticker never wakes
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttlTick) // past the TTL and past the next tick
	if v, err := c.Get(ctx, "k").Result(); err != redis.Nil {
		t.Errorf("Get 20ms after a 1ms TTL: %q, %v; want redis.Nil (expired)", v, err)
	}
}
