package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/backends/sdk"
)

// Set implements sdk.KeyValueBasic with SET, which also clears any TTL.
func (d *Driver) Set(ctx context.Context, key string, value []byte) error {
	op := fmt.Sprintf("set %q", key)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	if err := c.client.Set(ctx, c.key(key), value, 0).Err(); err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}

// Get implements sdk.KeyValueBasic with GET.
func (d *Driver) Get(ctx context.Context, key string) ([]byte, error) {
	op := fmt.Sprintf("get %q", key)
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	v, err := c.client.Get(ctx, c.key(key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Delete implements sdk.KeyValueBasic with DEL.
func (d *Driver) Delete(ctx context.Context, key string) (bool, error) {
	op := fmt.Sprintf("delete %q", key)
	c, err := d.conn(op)
	if err != nil {
		return false, err
	}
	defer c.release()
	n, err := c.client.Del(ctx, c.key(key)).Result()
	if err != nil {
		return false, wrap(ctx, op, err)
	}
	return n > 0, nil
}

// Exists implements sdk.KeyValueBasic with EXISTS.
func (d *Driver) Exists(ctx context.Context, key string) (bool, error) {
	op := fmt.Sprintf("check %q", key)
	c, err := d.conn(op)
	if err != nil {
		return false, err
	}
	defer c.release()
	n, err := c.client.Exists(ctx, c.key(key)).Result()
	if err != nil {
		return false, wrap(ctx, op, err)
	}
	return n > 0, nil
}

// SetWithTTL implements sdk.KeyValueTTL with SET and an expiry (PX; EX for
// whole seconds).
func (d *Driver) SetWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	op := fmt.Sprintf("set %q with ttl", key)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	if err := c.client.SetArgs(ctx, c.key(key), value, goredis.SetArgs{TTL: ms(ttl)}).Err(); err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}

// Expire implements sdk.KeyValueTTL with PEXPIRE.
func (d *Driver) Expire(ctx context.Context, key string, ttl time.Duration) error {
	op := fmt.Sprintf("expire %q", key)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	ok, err := c.client.PExpire(ctx, c.key(key), ms(ttl)).Result()
	if err != nil {
		return wrap(ctx, op, err)
	}
	if !ok {
		return fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	return nil
}

// TTL implements sdk.KeyValueTTL with PTTL.
func (d *Driver) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	op := fmt.Sprintf("read ttl of %q", key)
	c, err := d.conn(op)
	if err != nil {
		return 0, false, err
	}
	defer c.release()
	// go-redis reports PTTL's -2 (missing) and -1 (no expiry) as those
	// nanosecond counts, and any other reply in milliseconds.
	d2, err := c.client.PTTL(ctx, c.key(key)).Result()
	switch {
	case err != nil:
		return 0, false, wrap(ctx, op, err)
	case d2 == -2:
		return 0, false, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	case d2 == -1:
		return 0, false, nil
	case d2 < 0:
		return 0, false, fmt.Errorf("%s: redis answered PTTL with %v", op, d2)
	}
	return d2, true, nil
}

// Persist implements sdk.KeyValueTTL. PERSIST answers 0 both for a missing
// key and for one without a TTL, so EXISTS and PERSIST run in one MULTI/EXEC.
func (d *Driver) Persist(ctx context.Context, key string) (bool, error) {
	op := fmt.Sprintf("persist %q", key)
	c, err := d.conn(op)
	if err != nil {
		return false, err
	}
	defer c.release()
	var exists *goredis.IntCmd
	var persisted *goredis.BoolCmd
	_, err = c.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		exists = p.Exists(ctx, c.key(key))
		persisted = p.Persist(ctx, c.key(key))
		return nil
	})
	if err != nil {
		return false, wrap(ctx, op, err)
	}
	if exists.Val() == 0 {
		return false, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	return persisted.Val(), nil
}

// ms rounds a TTL up to whole milliseconds, Redis's finest unit, so a TTL
// is never shortened. A TTL within a millisecond of the largest duration
// cannot be rounded up without overflowing (which made SET store the key
// without expiry and PEXPIRE delete it); it is rounded down instead, which
// shortens a TTL of about 292 years by under a millisecond.
func ms(ttl time.Duration) time.Duration {
	if ttl > math.MaxInt64-(time.Millisecond-1) {
		return ttl.Truncate(time.Millisecond)
	}
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
}

// batch runs the commands of fn in one MULTI/EXEC on one server. On a Redis
// Cluster a transaction cannot span slots: there they are pipelined (the
// cluster client sends each to its key's primary), so a batch is not applied
// as a whole (keyvalue.batch does not promise it).
func (c *conn) batch(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error) {
	if _, ok := c.client.(*goredis.ClusterClient); ok {
		return c.client.Pipelined(ctx, fn)
	}
	return c.client.TxPipelined(ctx, fn)
}

// BatchSet implements sdk.KeyValueBatch: SETs (with an expiry when ttl > 0) in one
// MULTI/EXEC, so the batch is applied whole (on a cluster: pipelined, see batch).
func (d *Driver) BatchSet(ctx context.Context, entries []sdk.Entry, ttl time.Duration) error {
	op := fmt.Sprintf("batch set %d keys", len(entries))
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	if len(entries) == 0 {
		return nil
	}
	_, err = c.batch(ctx, func(p goredis.Pipeliner) error {
		for _, e := range entries {
			if ttl > 0 {
				p.SetArgs(ctx, c.key(e.Key), e.Value, goredis.SetArgs{TTL: ms(ttl)})
			} else {
				p.Set(ctx, c.key(e.Key), e.Value, 0)
			}
		}
		return nil
	})
	if err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}

// BatchGet implements sdk.KeyValueBatch with one MGET.
func (d *Driver) BatchGet(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	op := fmt.Sprintf("batch get %d keys", len(keys))
	c, err := d.conn(op)
	if err != nil {
		return nil, nil, err
	}
	defer c.release()
	values := make([][]byte, len(keys))
	found := make([]bool, len(keys))
	if len(keys) == 0 {
		return values, found, nil
	}
	got, err := c.mget(ctx, keys)
	if err != nil {
		return nil, nil, wrap(ctx, op, err)
	}
	for i, v := range got {
		if v != nil {
			values[i], found[i] = v, true
		}
	}
	return values, found, nil
}

// mget reads keys with MGET; a missing key (or one that does not hold a
// string) is nil.
func (c *conn) mget(ctx context.Context, keys []string) ([][]byte, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = c.key(k)
	}
	var res []any
	if _, ok := c.client.(*goredis.ClusterClient); ok {
		// MGET cannot span slots: one GET per key in a pipeline, which the
		// cluster client sends to each key's node.
		cmds := make([]*goredis.StringCmd, len(full))
		if _, err := c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range full {
				cmds[i] = p.Get(ctx, k)
			}
			return nil
		}); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, err
		}
		res = make([]any, len(cmds))
		for i, cmd := range cmds {
			switch v, err := cmd.Result(); {
			case errors.Is(err, goredis.Nil):
			case err != nil && goredis.HasErrorPrefix(err, "WRONGTYPE"):
				// MGET answers nil for a key that does not hold a string.
			case err != nil:
				return nil, err
			default:
				res[i] = v
			}
		}
	} else {
		var err error
		if res, err = c.client.MGet(ctx, full...).Result(); err != nil {
			return nil, err
		}
	}
	if len(res) != len(keys) {
		return nil, fmt.Errorf("redis answered MGET of %d keys with %d values", len(keys), len(res))
	}
	out := make([][]byte, len(keys))
	for i, v := range res {
		switch s := v.(type) {
		case nil:
		case string:
			out[i] = []byte(s)
		case []byte:
			out[i] = s
		default:
			return nil, fmt.Errorf("redis answered MGET with a %T for key %q", v, keys[i])
		}
	}
	return out, nil
}

// BatchDelete implements sdk.KeyValueBatch: one DEL per key (so each key's
// own result is known) in one MULTI/EXEC. A key given twice existed only
// the first time.
func (d *Driver) BatchDelete(ctx context.Context, keys []string) ([]bool, error) {
	op := fmt.Sprintf("batch delete %d keys", len(keys))
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	existed := make([]bool, len(keys))
	if len(keys) == 0 {
		return existed, nil
	}
	dels := make([]*goredis.IntCmd, len(keys))
	_, err = c.batch(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			dels[i] = p.Del(ctx, c.key(k))
		}
		return nil
	})
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	for i, del := range dels {
		existed[i] = del.Val() > 0
	}
	return existed, nil
}
