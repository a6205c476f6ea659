package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/backends/sdk/sdktest"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newStore(t *testing.T, mutate func(*memstore.Options)) (*memstore.Store, *clock) {
	t.Helper()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	s := memstore.New()
	o := memstore.DefaultOptions()
	o.Now, o.SweepInterval = c.Now, 0
	if mutate != nil {
		mutate(&o)
	}
	if err := s.Configure(o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, c
}

func TestInitRejectsBadConfigNamingTheField(t *testing.T) {
	cases := map[string]map[string]any{
		"max_keys":        {"max_keys": -1.0},
		"max_key_bytes":   {"max_key_bytes": 1.5},
		"max_value_bytes": {"max_value_bytes": "big"},
		"sweep_interval":  {"sweep_interval": "soon"},
		"colour":          {"colour": "blue"},
	}
	for field, cfg := range cases {
		err := memstore.New().Init(context.Background(), sdk.Config{Values: cfg})
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("Init(%v) = %v, want a ConfigError naming %q", cfg, err, field)
		}
	}
	s := memstore.New()
	if err := s.Init(context.Background(), sdk.Config{Values: map[string]any{"max_keys": 10.0, "sweep_interval": "10ms"}}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	_ = s.Close(context.Background())
}

func TestCapacityIsResourceExhaustedAndCountsOnlyLiveKeys(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t, func(o *memstore.Options) { o.MaxKeys = 3 })
	for i := range 3 {
		if err := s.SetWithTTL(ctx, fmt.Sprint(i), []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "overflow", []byte("v")); !errors.Is(err, sdk.ErrFull) {
		t.Fatalf("Set beyond capacity = %v, want ErrFull", err)
	}
	if err := s.Set(ctx, "1", []byte("overwrite")); err != nil {
		t.Fatalf("overwriting an existing key at capacity: %v", err)
	}
	if err := s.BatchSet(ctx, []sdk.Entry{{Key: "x"}, {Key: "y"}}, 0); !errors.Is(err, sdk.ErrFull) {
		t.Fatalf("BatchSet beyond capacity = %v, want ErrFull", err)
	}
	if _, err := s.Get(ctx, "x"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("a refused batch wrote x: %v", err)
	}
	c.Add(2 * time.Second) // every key expires
	if err := s.Set(ctx, "after-expiry", []byte("v")); err != nil {
		t.Fatalf("expired keys must not count against capacity: %v", err)
	}
}

func TestExpiryIsExactWithoutSweep(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t, nil)
	if err := s.SetWithTTL(ctx, "k", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	c.Add(999 * time.Millisecond)
	if _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	c.Add(time.Millisecond)
	if _, err := s.Get(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get at expiry = %v, want ErrNotFound", err)
	}
	if n, _ := s.Count(ctx, ""); n != 0 {
		t.Fatalf("Count counts an expired key: %d", n)
	}
	page, _, _ := s.Scan(ctx, "", "", 10, false)
	if len(page) != 0 {
		t.Fatalf("Scan returns an expired key: %v", page)
	}
}

func TestSweeperReclaimsExpiredKeys(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	if err := s.Init(ctx, sdk.Config{Values: map[string]any{"sweep_interval": "5ms"}}); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.SetWithTTL(ctx, "k", []byte("v"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Health(ctx).Details["keys"] != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper did not reclaim the expired key: %v", s.Health(ctx).Details)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestScanRejectsForeignCursor(t *testing.T) {
	s, _ := newStore(t, nil)
	if _, _, err := s.Scan(context.Background(), "a", "!!not-base64", 10, false); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("Scan with a bad cursor = %v, want ErrInvalid", err)
	}
}

// TestHugeTTLIsKept checks that a TTL at the largest Go duration (what the
// SDK hands over for a protobuf Duration of 300 years) keeps the key with an
// expiry on SetWithTTL, BatchSet and Expire: time.Time.Add saturates, so the
// deadline lies centuries ahead instead of wrapping into the past.
func TestHugeTTLIsKept(t *testing.T) {
	const huge = time.Duration(1<<63 - 1)
	const sane = 290 * 365 * 24 * time.Hour
	s, c := newStore(t, nil)
	ctx := context.Background()
	if err := s.SetWithTTL(ctx, "set", []byte("v"), huge); err != nil {
		t.Fatal(err)
	}
	if err := s.BatchSet(ctx, []sdk.Entry{{Key: "batch", Value: []byte("v")}}, huge); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "expire", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Expire(ctx, "expire", huge); err != nil {
		t.Fatal(err)
	}
	c.Add(24 * time.Hour)
	for _, k := range []string{"set", "batch", "expire"} {
		if got, err := s.Get(ctx, k); err != nil || string(got) != "v" {
			t.Errorf("Get(%s) a day after a huge TTL = %q, %v; want \"v\"", k, got, err)
		}
		if rem, has, err := s.TTL(ctx, k); err != nil || !has || rem < sane {
			t.Errorf("TTL(%s) a day after a huge TTL = %v, %v, %v; want at least %v, true, nil", k, rem, has, err, sane)
		}
	}
}

// TestServedUnderContention serves the store with the SDK and puts it under
// the suite's contention load; under -race (task test) a data race in the
// store or the SDK fails it.
func TestServedUnderContention(t *testing.T) {
	conn := sdktest.Serve(t, memstore.New(), nil)
	sdktest.ContendKeyValue(t, keyvaluev1.NewKeyValueClient(conn), "contention/", sdktest.Load{})
}
