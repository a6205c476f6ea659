// Package memstore is Prism's in-memory reference plugin.
//
// It declares keyvalue.basic, keyvalue.ttl, keyvalue.scan and keyvalue.batch,
// and pubsub.basic, pubsub.ordered and pubsub.queue (an in-process bus with
// the block-publisher slow-consumer policy; see pubsub.go). It declares no
// pubsub.durable: nothing survives the process.
// Keys live in an ordered B-tree, so Scan walks keys in byte order and its
// cursor (the last key returned) gives every key present for the whole scan
// exactly once, whatever is added or removed between pages. Expiry is exact
// from the caller's view: every read checks the deadline, and a sweeper only
// reclaims memory. Capacity is bounded by max_keys (ResourceExhausted when
// full); key and value sizes by max_key_bytes and max_value_bytes; payload
// sizes by max_payload_bytes; each subscription buffers at most
// buffer_messages messages or buffer_bytes bytes, and a publish waits at most
// block_timeout for a full buffer.
package memstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/tracing"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Options configure a Store; the zero value is not valid, use [DefaultOptions].
type Options struct {
	// MaxKeys is the capacity; a Set of a new key beyond it is ResourceExhausted.
	MaxKeys int64
	// MaxKeyBytes and MaxValueBytes bound request sizes (InvalidArgument beyond).
	MaxKeyBytes   int64
	MaxValueBytes int64
	// MaxPayloadBytes bounds PubSub payloads (InvalidArgument beyond).
	MaxPayloadBytes int64
	// BufferMessages, BufferBytes and BlockTimeout are the slow-consumer
	// policy: a subscription's buffer size, and how long a publish waits for
	// room before the slow subscription is ended.
	BufferMessages int
	BufferBytes    int64
	BlockTimeout   time.Duration
	// SweepInterval is how often expired keys are reclaimed (0: never).
	SweepInterval time.Duration
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

// DefaultOptions returns the options a plugin starts with before Initialize.
func DefaultOptions() Options {
	return Options{
		MaxKeys:       1_000_000,
		MaxKeyBytes:   sdk.DefaultMaxKeyBytes,
		MaxValueBytes: sdk.DefaultMaxValueBytes,
		SweepInterval: time.Second,
		Now:           time.Now,

		MaxPayloadBytes: sdk.DefaultMaxPayloadBytes,
		BufferMessages:  1024,
		BufferBytes:     8 << 20,
		BlockTimeout:    time.Second,
	}
}

type item struct {
	key     string
	value   []byte
	expires time.Time // zero: never
}

func less(a, b *item) bool { return a.key < b.key }

// Store is the memstore driver. It is safe for concurrent use.
type Store struct {
	mu    sync.RWMutex
	opts  Options
	tree  *btree.BTreeG[*item]
	stop  chan struct{}
	sweep sync.WaitGroup

	busOnce sync.Once
	ps      *bus // PubSub subscriptions (pubsub.go)
}

var (
	_ sdk.Driver        = (*Store)(nil)
	_ sdk.KeyValueBasic = (*Store)(nil)
	_ sdk.KeyValueTTL   = (*Store)(nil)
	_ sdk.KeyValueScan  = (*Store)(nil)
	_ sdk.KeyValueBatch = (*Store)(nil)
)

// New returns a Store with [DefaultOptions]; Init applies config.
func New() *Store {
	return &Store{opts: DefaultOptions(), tree: btree.NewG(32, less)}
}

// Describe implements sdk.Driver.
func (s *Store) Describe() sdk.Description {
	return sdk.Description{Name: "memstore", Version: Version, Info: map[string]string{"backend": "in-process memory"}}
}

// Limits implements sdk.Driver.
func (s *Store) Limits() sdk.Limits {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sdk.Limits{MaxKeyBytes: s.opts.MaxKeyBytes, MaxValueBytes: s.opts.MaxValueBytes, MaxPayloadBytes: s.opts.MaxPayloadBytes}
}

// Init reads config: max_keys, max_key_bytes, max_value_bytes,
// max_payload_bytes, buffer_messages, buffer_bytes (positive integers),
// sweep_interval and block_timeout (Go durations such as "500ms"). Unknown
// fields are rejected so typos do not pass silently.
func (s *Store) Init(_ context.Context, cfg sdk.Config) error {
	o := DefaultOptions()
	for field, v := range cfg.Values {
		switch field {
		case "max_keys":
			n, err := positiveInt(field, v)
			if err != nil {
				return err
			}
			o.MaxKeys = n
		case "max_key_bytes":
			n, err := positiveInt(field, v)
			if err != nil {
				return err
			}
			o.MaxKeyBytes = n
		case "max_value_bytes":
			n, err := positiveInt(field, v)
			if err != nil {
				return err
			}
			o.MaxValueBytes = n
		case "sweep_interval":
			str, ok := v.(string)
			if !ok {
				return sdk.InvalidConfig(field, "must be a duration string such as \"1s\", got %T", v)
			}
			d, err := time.ParseDuration(str)
			if err != nil || d < 0 {
				return sdk.InvalidConfig(field, "must be a non-negative duration such as \"1s\", got %q", str)
			}
			o.SweepInterval = d
		case "max_payload_bytes", "buffer_messages", "buffer_bytes":
			n, err := positiveInt(field, v)
			if err != nil {
				return err
			}
			switch field {
			case "max_payload_bytes":
				o.MaxPayloadBytes = n
			case "buffer_messages":
				o.BufferMessages = int(n)
			default:
				o.BufferBytes = n
			}
		case "block_timeout":
			str, _ := v.(string)
			d, err := time.ParseDuration(str)
			if err != nil || d <= 0 {
				return sdk.InvalidConfig(field, "must be a positive duration string such as \"1s\", got %v", v)
			}
			o.BlockTimeout = d
		default:
			return sdk.InvalidConfig(field, "unknown field (known: max_keys, max_key_bytes, max_value_bytes, sweep_interval, "+
				"max_payload_bytes, buffer_messages, buffer_bytes, block_timeout)")
		}
	}
	return s.Configure(o)
}

// Configure applies opts directly (for in-process use) and (re)starts the sweeper.
func (s *Store) Configure(o Options) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	s.stopSweeper()
	s.mu.Lock()
	s.opts = o
	s.mu.Unlock()
	if o.SweepInterval > 0 {
		s.stop = make(chan struct{})
		s.sweep.Add(1)
		go s.sweeper(o.SweepInterval, s.stop)
	}
	return nil
}

func positiveInt(field string, v any) (int64, error) {
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) || f <= 0 {
		return 0, sdk.InvalidConfig(field, "must be a positive integer, got %v", v)
	}
	return int64(f), nil
}

// Health implements sdk.Driver: memory is always reachable.
func (s *Store) Health(context.Context) sdk.Health {
	s.mu.RLock()
	n := s.tree.Len()
	s.mu.RUnlock()
	return sdk.Health{Status: sdk.Healthy, Details: map[string]string{"keys": fmt.Sprint(n), "subscriptions": fmt.Sprint(s.bus().subscriptions())}}
}

// Close implements sdk.Driver.
func (s *Store) Close(context.Context) error {
	s.stopSweeper()
	return nil
}

func (s *Store) stopSweeper() {
	if s.stop != nil {
		close(s.stop)
		s.sweep.Wait()
		s.stop = nil
	}
}

func (s *Store) sweeper(every time.Duration, stop chan struct{}) {
	defer s.sweep.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.sweepExpired()
		}
	}
}

func (s *Store) sweepExpired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
}

// sweepLocked removes expired items; callers hold s.mu for writing.
func (s *Store) sweepLocked() {
	now := s.opts.Now()
	var dead []*item
	s.tree.Ascend(func(it *item) bool {
		if it.expired(now) {
			dead = append(dead, it)
		}
		return true
	})
	for _, it := range dead {
		s.tree.Delete(it)
	}
}

func (it *item) expired(now time.Time) bool {
	return !it.expires.IsZero() && !now.Before(it.expires)
}

// live returns the unexpired item for key; callers hold s.mu.
func (s *Store) live(key string, now time.Time) (*item, bool) {
	it, ok := s.tree.Get(&item{key: key})
	if !ok || it.expired(now) {
		return nil, false
	}
	return it, true
}

// put stores an item, enforcing capacity for new keys; callers hold s.mu.
func (s *Store) put(key string, value []byte, expires time.Time, now time.Time) error {
	if _, exists := s.live(key, now); !exists {
		if int64(s.tree.Len()) >= s.opts.MaxKeys {
			s.sweepLocked() // reclaim expired keys before refusing
			if int64(s.tree.Len()) >= s.opts.MaxKeys {
				return fmt.Errorf("set %q: store holds %d keys, the configured max_keys: %w", key, s.tree.Len(), sdk.ErrFull)
			}
		}
	}
	s.tree.ReplaceOrInsert(&item{key: key, value: clone(value), expires: expires})
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}

// Linearizable declares keyvalue.linearizable (sdk.KeyValueLinearizable):
// one process, one lock per operation, no replicas.
func (s *Store) Linearizable() {}

// Set implements sdk.KeyValueBasic.
func (s *Store) Set(ctx context.Context, key string, value []byte) error {
	_, sp := tracing.Child(ctx, "memstore.Set")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put(key, value, time.Time{}, s.opts.Now())
}

// Get implements sdk.KeyValueBasic.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	_, sp := tracing.Child(ctx, "memstore.Get")
	defer sp.End()
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.live(key, s.opts.Now())
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, sdk.ErrNotFound)
	}
	return clone(it.value), nil
}

// Delete implements sdk.KeyValueBasic.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	_, sp := tracing.Child(ctx, "memstore.Delete")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live(key, s.opts.Now())
	s.tree.Delete(&item{key: key})
	return ok, nil
}

// Exists implements sdk.KeyValueBasic.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	_, sp := tracing.Child(ctx, "memstore.Exists")
	defer sp.End()
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.live(key, s.opts.Now())
	return ok, nil
}

// SetWithTTL implements sdk.KeyValueTTL.
func (s *Store) SetWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, sp := tracing.Child(ctx, "memstore.SetWithTTL")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	return s.put(key, value, now.Add(ttl), now)
}

// Expire implements sdk.KeyValueTTL.
func (s *Store) Expire(ctx context.Context, key string, ttl time.Duration) error {
	_, sp := tracing.Child(ctx, "memstore.Expire")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	it, ok := s.live(key, now)
	if !ok {
		return fmt.Errorf("expire %q: %w", key, sdk.ErrNotFound)
	}
	s.tree.ReplaceOrInsert(&item{key: key, value: it.value, expires: now.Add(ttl)})
	return nil
}

// TTL implements sdk.KeyValueTTL.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	_, sp := tracing.Child(ctx, "memstore.TTL")
	defer sp.End()
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.opts.Now()
	it, ok := s.live(key, now)
	if !ok {
		return 0, false, fmt.Errorf("ttl %q: %w", key, sdk.ErrNotFound)
	}
	if it.expires.IsZero() {
		return 0, false, nil
	}
	return it.expires.Sub(now), true, nil
}

// Persist implements sdk.KeyValueTTL.
func (s *Store) Persist(ctx context.Context, key string) (bool, error) {
	_, sp := tracing.Child(ctx, "memstore.Persist")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key, s.opts.Now())
	if !ok {
		return false, fmt.Errorf("persist %q: %w", key, sdk.ErrNotFound)
	}
	had := !it.expires.IsZero()
	s.tree.ReplaceOrInsert(&item{key: key, value: it.value})
	return had, nil
}

// Scan implements sdk.KeyValueScan. The cursor is the last key returned,
// base64url-encoded; the next page starts strictly after it.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int, withValues bool) ([]sdk.Entry, string, error) {
	_, sp := tracing.Child(ctx, "memstore.Scan")
	defer sp.End()
	start := prefix
	after := ""
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !strings.HasPrefix(string(raw), prefix) {
			return nil, "", fmt.Errorf("scan: cursor is not one this store issued for prefix %q: %w", prefix, sdk.ErrInvalid)
		}
		start, after = string(raw), string(raw)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.opts.Now()
	page := make([]sdk.Entry, 0, limit)
	more := false
	s.tree.AscendGreaterOrEqual(&item{key: start}, func(it *item) bool {
		if !strings.HasPrefix(it.key, prefix) {
			return false
		}
		if (cursor != "" && it.key == after) || it.expired(now) {
			return true
		}
		if len(page) == limit {
			more = true
			return false
		}
		e := sdk.Entry{Key: it.key}
		if withValues {
			e.Value = clone(it.value)
		}
		page = append(page, e)
		return true
	})
	if !more {
		return page, "", nil
	}
	return page, base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].Key)), nil
}

// Count implements sdk.KeyValueScan.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	_, sp := tracing.Child(ctx, "memstore.Count")
	defer sp.End()
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.opts.Now()
	var n int64
	s.tree.AscendGreaterOrEqual(&item{key: prefix}, func(it *item) bool {
		if !strings.HasPrefix(it.key, prefix) {
			return false
		}
		if !it.expired(now) {
			n++
		}
		return true
	})
	return n, nil
}

// BatchSet implements sdk.KeyValueBatch: all entries or none (a capacity
// failure is detected before any write).
func (s *Store) BatchSet(ctx context.Context, entries []sdk.Entry, ttl time.Duration) error {
	_, sp := tracing.Child(ctx, "memstore.BatchSet")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	fresh := map[string]bool{}
	for _, e := range entries {
		if _, ok := s.live(e.Key, now); !ok {
			fresh[e.Key] = true
		}
	}
	if int64(s.tree.Len()+len(fresh)) > s.opts.MaxKeys {
		return fmt.Errorf("batch set of %d new keys: store holds %d of max_keys %d: %w", len(fresh), s.tree.Len(), s.opts.MaxKeys, sdk.ErrFull)
	}
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	for _, e := range entries {
		s.tree.ReplaceOrInsert(&item{key: e.Key, value: clone(e.Value), expires: expires})
	}
	return nil
}

// BatchGet implements sdk.KeyValueBatch.
func (s *Store) BatchGet(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	_, sp := tracing.Child(ctx, "memstore.BatchGet")
	defer sp.End()
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.opts.Now()
	values := make([][]byte, len(keys))
	found := make([]bool, len(keys))
	for i, k := range keys {
		if it, ok := s.live(k, now); ok {
			values[i], found[i] = clone(it.value), true
		}
	}
	return values, found, nil
}

// BatchDelete implements sdk.KeyValueBatch.
func (s *Store) BatchDelete(ctx context.Context, keys []string) ([]bool, error) {
	_, sp := tracing.Child(ctx, "memstore.BatchDelete")
	defer sp.End()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	existed := make([]bool, len(keys))
	for i, k := range keys {
		_, existed[i] = s.live(k, now)
		s.tree.Delete(&item{key: k})
	}
	return existed, nil
}
