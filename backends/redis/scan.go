package redis

import (
	"container/heap"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/backends/sdk"
)

// scanCount is the COUNT hint of each SCAN call: how much of the keyspace
// Redis walks per round trip.
const scanCount = 1000

// cursorTag starts every cursor Scan issues, so the format can change later.
const cursorTag = "r1."

// Scan implements sdk.KeyValueScan as a sorted scan; see the package doc.
func (d *Driver) Scan(ctx context.Context, prefix, cursor string, limit int, withValues bool) ([]sdk.Entry, string, error) {
	op := fmt.Sprintf("scan prefix %q", prefix)
	c, err := d.conn(op)
	if err != nil {
		return nil, "", err
	}
	defer c.release()
	if limit <= 0 {
		limit = sdk.DefaultPageSize
	}
	after, hasAfter, err := decodeCursor(prefix, cursor)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", op, err)
	}

	// Keep the limit+1 smallest distinct keys after the cursor: the first
	// limit are the page, the extra one tells whether another page follows.
	// A key SCAN repeats is either in the heap (seen) or was evicted because
	// limit+1 smaller keys were found, and the heap's top only decreases from
	// then on, so it cannot come back.
	best := &maxHeap{}
	seen := make(map[string]struct{}, limit+1)
	err = c.scanPrefix(ctx, prefix, func(k string) {
		if hasAfter && k <= after {
			return
		}
		if _, dup := seen[k]; dup {
			return
		}
		if best.Len() <= limit {
			heap.Push(best, k)
			seen[k] = struct{}{}
			return
		}
		if k < (*best)[0] {
			delete(seen, (*best)[0])
			(*best)[0] = k
			heap.Fix(best, 0)
			seen[k] = struct{}{}
		}
	})
	if err != nil {
		return nil, "", wrap(ctx, op, err)
	}

	keys := []string(*best)
	slices.Sort(keys)
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = encodeCursor(keys[limit-1])
	}
	page := make([]sdk.Entry, 0, len(keys))
	if !withValues {
		for _, k := range keys {
			page = append(page, sdk.Entry{Key: k})
		}
		return page, next, nil
	}
	if len(keys) == 0 {
		return page, next, nil
	}
	values, err := c.mget(ctx, keys)
	if err != nil {
		return nil, "", wrap(ctx, op+" values", err)
	}
	for i, k := range keys {
		if values[i] != nil { // deleted since the SCAN: not part of the page
			page = append(page, sdk.Entry{Key: k, Value: values[i]})
		}
	}
	return page, next, nil
}

// Count implements sdk.KeyValueScan: one full SCAN of the prefix, counting
// distinct keys (SCAN may repeat a key). O(n) time and memory.
func (d *Driver) Count(ctx context.Context, prefix string) (int64, error) {
	op := fmt.Sprintf("count prefix %q", prefix)
	c, err := d.conn(op)
	if err != nil {
		return 0, err
	}
	defer c.release()
	seen := map[string]struct{}{}
	if err := c.scanPrefix(ctx, prefix, func(k string) { seen[k] = struct{}{} }); err != nil {
		return 0, wrap(ctx, op, err)
	}
	return int64(len(seen)), nil
}

// scanPrefix runs SCAN to its end over the Redis keys starting with
// key_prefix+prefix and calls fn with each key (without key_prefix), possibly
// more than once. Keys that are not valid UTF-8 are skipped: the protocol
// cannot carry them.
func (c *conn) scanPrefix(ctx context.Context, prefix string, fn func(key string)) error {
	if cc, ok := c.client.(*goredis.ClusterClient); ok {
		// A SCAN sees one node's keys: visit every primary, one at a time
		// (fn is not safe for concurrent use).
		var mu sync.Mutex
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			return scanNode(ctx, node, c.key(prefix), len(c.opts.KeyPrefix), func(k string) {
				mu.Lock()
				defer mu.Unlock()
				fn(k)
			})
		})
	}
	return scanNode(ctx, c.client, c.key(prefix), len(c.opts.KeyPrefix), fn)
}

// scanNode runs SCAN to its end on one server over the keys starting with
// full, and calls fn with each without its first strip bytes.
func scanNode(ctx context.Context, client goredis.Cmdable, full string, strip int, fn func(key string)) error {
	match := escapeGlob(full) + "*"
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			// MATCH already filtered; this guards against a server whose glob
			// dialect differs from Redis's.
			if !strings.HasPrefix(k, full) || !utf8.ValidString(k) {
				continue
			}
			fn(k[strip:])
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// escapeGlob quotes s so that, as a Redis MATCH pattern, it matches exactly
// s: each of the glob characters * ? [ ] \ gets a backslash. (^ and - are
// special only inside brackets, which never open once [ is escaped.)
func escapeGlob(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// encodeCursor makes the opaque cursor for "continue after key".
func encodeCursor(key string) string {
	return cursorTag + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// decodeCursor returns the key to continue after; hasAfter is false for the
// first page (cursor ""). A cursor must come from a Scan of the same prefix.
func decodeCursor(prefix, cursor string) (after string, hasAfter bool, err error) {
	if cursor == "" {
		return "", false, nil
	}
	enc, ok := strings.CutPrefix(cursor, cursorTag)
	raw, decErr := base64.RawURLEncoding.DecodeString(enc)
	if !ok || decErr != nil || !strings.HasPrefix(string(raw), prefix) {
		return "", false, fmt.Errorf("cursor is not one this plugin issued for prefix %q: %w", prefix, sdk.ErrInvalid)
	}
	return string(raw), true, nil
}

// maxHeap is a container/heap of strings with the greatest on top.
type maxHeap []string

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
