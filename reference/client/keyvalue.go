package client

import (
	"context"
	"fmt"
	"iter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// KeyValue is the KeyValue API of a client's namespace. Errors wrap the
// gRPC status: use [IsNotFound] or [Code] on them.
type KeyValue struct {
	c  *Client
	kv keyvaluev1.KeyValueClient
}

// KeyValue returns the KeyValue API.
func (c *Client) KeyValue() *KeyValue {
	return &KeyValue{c: c, kv: keyvaluev1.NewKeyValueClient(c.conn)}
}

// Entry is a key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// SetOption configures Set and BatchSet.
type SetOption func(*setOptions)

type setOptions struct{ ttl time.Duration }

// WithTTL makes the key expire after d (needs keyvalue.ttl).
func WithTTL(d time.Duration) SetOption { return func(o *setOptions) { o.ttl = d } }

func ttlOf(opts []SetOption) *durationpb.Duration {
	var o setOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.ttl > 0 {
		return durationpb.New(o.ttl)
	}
	return nil
}

// Set stores value under key, replacing any value and expiry.
func (k *KeyValue) Set(ctx context.Context, key string, value []byte, opts ...SetOption) error {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	if _, err := k.kv.Set(ctx, &keyvaluev1.SetRequest{Key: key, Value: value, Ttl: ttlOf(opts)}); err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	return nil
}

// Get returns the value of key; a missing key is an error for which
// [IsNotFound] is true.
func (k *KeyValue) Get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.Get(ctx, &keyvaluev1.GetRequest{Key: key})
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return resp.GetValue(), nil
}

// Delete removes key and reports whether it existed.
func (k *KeyValue) Delete(ctx context.Context, key string) (bool, error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.Delete(ctx, &keyvaluev1.DeleteRequest{Key: key})
	if err != nil {
		return false, fmt.Errorf("delete %q: %w", key, err)
	}
	return resp.GetExisted(), nil
}

// Exists reports whether key is present.
func (k *KeyValue) Exists(ctx context.Context, key string) (bool, error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.Exists(ctx, &keyvaluev1.ExistsRequest{Key: key})
	if err != nil {
		return false, fmt.Errorf("check %q: %w", key, err)
	}
	return resp.GetExists(), nil
}

// Expire makes an existing key expire after ttl.
func (k *KeyValue) Expire(ctx context.Context, key string, ttl time.Duration) error {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	if _, err := k.kv.Expire(ctx, &keyvaluev1.ExpireRequest{Key: key, Ttl: durationpb.New(ttl)}); err != nil {
		return fmt.Errorf("expire %q: %w", key, err)
	}
	return nil
}

// TTL returns the remaining time to live of key; ok is false for a key
// without expiry.
func (k *KeyValue) TTL(ctx context.Context, key string) (ttl time.Duration, ok bool, err error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.GetTTL(ctx, &keyvaluev1.GetTTLRequest{Key: key})
	if err != nil {
		return 0, false, fmt.Errorf("get ttl of %q: %w", key, err)
	}
	return resp.GetTtl().AsDuration(), resp.GetHasExpiry(), nil
}

// Persist removes key's expiry and reports whether it had one.
func (k *KeyValue) Persist(ctx context.Context, key string) (bool, error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.Persist(ctx, &keyvaluev1.PersistRequest{Key: key})
	if err != nil {
		return false, fmt.Errorf("persist %q: %w", key, err)
	}
	return resp.GetHadExpiry(), nil
}

// ScanOptions configure Scan.
type ScanOptions struct {
	// PageSize is the most keys per call (0: the plugin's default).
	PageSize int
	// Values asks for the values too.
	Values bool
}

// Scan returns the keys with prefix (and their values, when asked), page by
// page; each page is one call with its own deadline. It stops at the first
// error, which it yields.
func (k *KeyValue) Scan(ctx context.Context, prefix string, o ScanOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		cursor := ""
		for {
			cctx, cancel := k.c.callContext(ctx)
			resp, err := k.kv.Scan(cctx, &keyvaluev1.ScanRequest{Prefix: prefix, PageSize: int32(o.PageSize), Cursor: cursor, IncludeValues: o.Values})
			cancel()
			if err != nil {
				yield(Entry{}, fmt.Errorf("scan %q: %w", prefix, err))
				return
			}
			for _, e := range resp.GetEntries() {
				if !yield(Entry{Key: e.GetKey(), Value: e.GetValue()}, nil) {
					return
				}
			}
			if cursor = resp.GetNextCursor(); cursor == "" {
				return
			}
		}
	}
}

// Count returns the number of keys with prefix.
func (k *KeyValue) Count(ctx context.Context, prefix string) (int64, error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.Count(ctx, &keyvaluev1.CountRequest{Prefix: prefix})
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", prefix, err)
	}
	return resp.GetCount(), nil
}

// BatchSet stores every entry or none.
func (k *KeyValue) BatchSet(ctx context.Context, entries []Entry, opts ...SetOption) error {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	req := &keyvaluev1.BatchSetRequest{Ttl: ttlOf(opts)}
	for _, e := range entries {
		req.Entries = append(req.Entries, &keyvaluev1.Entry{Key: e.Key, Value: e.Value})
	}
	if _, err := k.kv.BatchSet(ctx, req); err != nil {
		return fmt.Errorf("batch set %d entries: %w", len(entries), err)
	}
	return nil
}

// BatchGet returns the values of keys, in request order; a missing key has
// a nil value and found false.
func (k *KeyValue) BatchGet(ctx context.Context, keys []string) (values [][]byte, found []bool, err error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.BatchGet(ctx, &keyvaluev1.BatchGetRequest{Keys: keys})
	if err != nil {
		return nil, nil, fmt.Errorf("batch get %d keys: %w", len(keys), err)
	}
	for _, r := range resp.GetResults() {
		values = append(values, r.GetValue())
		found = append(found, r.GetFound())
	}
	return values, found, nil
}

// BatchDelete removes keys and reports per key whether it existed.
func (k *KeyValue) BatchDelete(ctx context.Context, keys []string) ([]bool, error) {
	ctx, cancel := k.c.callContext(ctx)
	defer cancel()
	resp, err := k.kv.BatchDelete(ctx, &keyvaluev1.BatchDeleteRequest{Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("batch delete %d keys: %w", len(keys), err)
	}
	return resp.GetExisted(), nil
}
