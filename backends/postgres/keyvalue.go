package postgres

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prism-suite/prism/backends/sdk"
)

// live is the condition a row must meet to exist: not expired at the
// moment the statement reads it.
const live = "(expires_at IS NULL OR expires_at > clock_timestamp())"

// expiresAt is the expiry of a TTL given in microseconds as $n.
func expiresAt(n int) string {
	return fmt.Sprintf("clock_timestamp() + $%d::bigint * interval '1 microsecond'", n)
}

// micros is ttl in whole microseconds, at least 1.
func micros(ttl time.Duration) int64 { return max(int64(ttl/time.Microsecond), 1) }

// nonNil keeps an empty value a value: pgx sends a nil slice as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// upsert is the statement that stores $1 = $2 with expires_at = expiry. It
// replaces an existing row, expired or not.
func (c *conn) upsert(expiry string) string {
	return "INSERT INTO " + c.table + " (k, v, expires_at) VALUES ($1, $2, " + expiry + ") " +
		"ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, expires_at = EXCLUDED.expires_at"
}

// Set implements sdk.KeyValueBasic; it clears any TTL.
func (d *Driver) Set(ctx context.Context, key string, value []byte) error {
	op := fmt.Sprintf("set %q", key)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	if _, err := c.pool.Exec(ctx, c.upsert("NULL"), []byte(key), nonNil(value)); err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}

// Get implements sdk.KeyValueBasic.
func (d *Driver) Get(ctx context.Context, key string) ([]byte, error) {
	op := fmt.Sprintf("get %q", key)
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	var v []byte
	err = c.pool.QueryRow(ctx, "SELECT v FROM "+c.table+" WHERE k = $1 AND "+live, []byte(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	return nonNil(v), nil
}

// Delete implements sdk.KeyValueBasic: an expired row is deleted too, but
// did not exist.
func (d *Driver) Delete(ctx context.Context, key string) (bool, error) {
	op := fmt.Sprintf("delete %q", key)
	c, err := d.conn(op)
	if err != nil {
		return false, err
	}
	defer c.release()
	var existed bool
	err = c.pool.QueryRow(ctx, "DELETE FROM "+c.table+" WHERE k = $1 RETURNING "+live, []byte(key)).Scan(&existed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap(ctx, op, err)
	}
	return existed, nil
}

// Exists implements sdk.KeyValueBasic.
func (d *Driver) Exists(ctx context.Context, key string) (bool, error) {
	op := fmt.Sprintf("check %q", key)
	c, err := d.conn(op)
	if err != nil {
		return false, err
	}
	defer c.release()
	var ok bool
	if err := c.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+c.table+" WHERE k = $1 AND "+live+")", []byte(key)).Scan(&ok); err != nil {
		return false, wrap(ctx, op, err)
	}
	return ok, nil
}

// SetWithTTL implements sdk.KeyValueTTL.
func (d *Driver) SetWithTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	op := fmt.Sprintf("set %q with ttl", key)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	if _, err := c.pool.Exec(ctx, c.upsert(expiresAt(3)), []byte(key), nonNil(value), micros(ttl)); err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}

// Expire implements sdk.KeyValueTTL: NotFound for a missing or expired key.
func (d *Driver) Expire(ctx context.Context, key string, ttl time.Duration) error {
	op := fmt.Sprintf("expire %q", key)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	tag, err := c.pool.Exec(ctx, "UPDATE "+c.table+" SET expires_at = "+expiresAt(2)+" WHERE k = $1 AND "+live, []byte(key), micros(ttl))
	if err != nil {
		return wrap(ctx, op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	return nil
}

// TTL implements sdk.KeyValueTTL.
func (d *Driver) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	op := fmt.Sprintf("read ttl of %q", key)
	c, err := d.conn(op)
	if err != nil {
		return 0, false, err
	}
	defer c.release()
	var has bool
	var us int64
	err = c.pool.QueryRow(ctx, "SELECT expires_at IS NOT NULL, "+
		"COALESCE(floor(extract(epoch FROM (expires_at - clock_timestamp())) * 1000000)::bigint, 0) "+
		"FROM "+c.table+" WHERE k = $1 AND "+live, []byte(key)).Scan(&has, &us)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	if err != nil {
		return 0, false, wrap(ctx, op, err)
	}
	if !has {
		return 0, false, nil
	}
	return time.Duration(max(us, 0)) * time.Microsecond, true, nil
}

// Persist implements sdk.KeyValueTTL: one statement reads the old expiry
// and clears it, so a missing key is NotFound rather than "had no TTL".
func (d *Driver) Persist(ctx context.Context, key string) (bool, error) {
	op := fmt.Sprintf("persist %q", key)
	c, err := d.conn(op)
	if err != nil {
		return false, err
	}
	defer c.release()
	var had bool
	err = c.pool.QueryRow(ctx, "UPDATE "+c.table+" t SET expires_at = NULL FROM "+
		"(SELECT k, expires_at AS old FROM "+c.table+" WHERE k = $1 AND "+live+" FOR UPDATE) o "+
		"WHERE t.k = o.k RETURNING o.old IS NOT NULL", []byte(key)).Scan(&had)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	if err != nil {
		return false, wrap(ctx, op, err)
	}
	return had, nil
}

// prefixRange is the condition "k starts with $n" as a byte range, and its
// arguments: k >= prefix, and k < the prefix's successor when it has one (a
// prefix of only 0xff bytes has none).
func prefixRange(prefix string, n int) (string, []any) {
	if prefix == "" {
		return "TRUE", nil
	}
	hi := []byte(prefix)
	for len(hi) > 0 && hi[len(hi)-1] == 0xff {
		hi = hi[:len(hi)-1]
	}
	if len(hi) == 0 {
		return fmt.Sprintf("k >= $%d", n), []any{[]byte(prefix)}
	}
	hi[len(hi)-1]++
	return fmt.Sprintf("k >= $%d AND k < $%d", n, n+1), []any{[]byte(prefix), hi}
}

// Scan implements sdk.KeyValueScan by keyset pagination in byte order (see
// the package doc).
func (d *Driver) Scan(ctx context.Context, prefix, cursor string, limit int, withValues bool) ([]sdk.Entry, string, error) {
	op := fmt.Sprintf("scan %q", prefix)
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	c, err := d.conn(op)
	if err != nil {
		return nil, "", err
	}
	defer c.release()
	cond, args := prefixRange(prefix, 1)
	if after != nil {
		args = append(args, after)
		cond += fmt.Sprintf(" AND k > $%d", len(args))
	}
	args = append(args, limit+1)
	cols := "k, NULL::bytea"
	if withValues {
		cols = "k, v"
	}
	rows, err := c.pool.Query(ctx, "SELECT "+cols+" FROM "+c.table+" WHERE "+cond+" AND "+live+
		fmt.Sprintf(" ORDER BY k LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, "", wrap(ctx, op, err)
	}
	var page []sdk.Entry
	more := false
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return nil, "", wrap(ctx, op, err)
		}
		if len(page) == limit {
			more = true
			break
		}
		e := sdk.Entry{Key: string(k)}
		if withValues {
			e.Value = nonNil(v)
		}
		page = append(page, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", wrap(ctx, op, err)
	}
	next := ""
	if more {
		next = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].Key))
	}
	return page, next, nil
}

func decodeCursor(cursor string) ([]byte, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("cursor: not a cursor this plugin returned: %w", sdk.ErrInvalid)
	}
	return b, nil
}

// Count implements sdk.KeyValueScan.
func (d *Driver) Count(ctx context.Context, prefix string) (int64, error) {
	op := fmt.Sprintf("count %q", prefix)
	c, err := d.conn(op)
	if err != nil {
		return 0, err
	}
	defer c.release()
	cond, args := prefixRange(prefix, 1)
	var n int64
	if err := c.pool.QueryRow(ctx, "SELECT count(*) FROM "+c.table+" WHERE "+cond+" AND "+live, args...).Scan(&n); err != nil {
		return 0, wrap(ctx, op, err)
	}
	return n, nil
}

// inTx runs f in one transaction on one connection.
func (c *conn) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, c.pool, f)
}

// BatchSet implements sdk.KeyValueBatch: every upsert in one transaction,
// sent as one pipeline; a key given twice ends with its last value.
func (d *Driver) BatchSet(ctx context.Context, entries []sdk.Entry, ttl time.Duration) error {
	op := fmt.Sprintf("batch set %d keys", len(entries))
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	err = c.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range entries {
			if ttl > 0 {
				b.Queue(c.upsert(expiresAt(3)), []byte(e.Key), nonNil(e.Value), micros(ttl))
			} else {
				b.Queue(c.upsert("NULL"), []byte(e.Key), nonNil(e.Value))
			}
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}

// BatchGet implements sdk.KeyValueBatch with one statement.
func (d *Driver) BatchGet(ctx context.Context, keys []string) ([][]byte, []bool, error) {
	op := fmt.Sprintf("batch get %d keys", len(keys))
	c, err := d.conn(op)
	if err != nil {
		return nil, nil, err
	}
	defer c.release()
	ks := make([][]byte, len(keys))
	for i, k := range keys {
		ks[i] = []byte(k)
	}
	rows, err := c.pool.Query(ctx, "SELECT k, v FROM "+c.table+" WHERE k = ANY($1) AND "+live, ks)
	if err != nil {
		return nil, nil, wrap(ctx, op, err)
	}
	got := make(map[string][]byte, len(keys))
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return nil, nil, wrap(ctx, op, err)
		}
		got[string(k)] = nonNil(v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, wrap(ctx, op, err)
	}
	values := make([][]byte, len(keys))
	found := make([]bool, len(keys))
	for i, k := range keys {
		values[i], found[i] = got[k]
	}
	return values, found, nil
}

// BatchDelete implements sdk.KeyValueBatch: every delete in one
// transaction; a key existed when it was there and not expired (a key given
// twice exists only the first time).
func (d *Driver) BatchDelete(ctx context.Context, keys []string) ([]bool, error) {
	op := fmt.Sprintf("batch delete %d keys", len(keys))
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	existed := make([]bool, len(keys))
	err = c.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, k := range keys {
			b.Queue("DELETE FROM "+c.table+" WHERE k = $1 RETURNING "+live, []byte(k))
		}
		br := tx.SendBatch(ctx, b)
		for i := range keys {
			err := br.QueryRow().Scan(&existed[i])
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				_ = br.Close()
				return err
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	return existed, nil
}
