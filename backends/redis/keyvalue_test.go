package redis_test

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
)

func TestBasicOps(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx := testCtx(t, 10*time.Second)

	if _, err := d.Get(ctx, "missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
	if ok, err := d.Exists(ctx, "missing"); err != nil || ok {
		t.Errorf("Exists(missing) = %v, %v; want false, nil", ok, err)
	}
	if existed, err := d.Delete(ctx, "missing"); err != nil || existed {
		t.Errorf("Delete(missing) = %v, %v; want false, nil", existed, err)
	}

	binary := []byte{0, 1, 2, 0xff, '\r', '\n'}
	for _, v := range [][]byte{[]byte("hello"), {}, binary} {
		if err := d.Set(ctx, "k", v); err != nil {
			t.Fatalf("Set: %v", err)
		}
		got, err := d.Get(ctx, "k")
		if err != nil || !bytes.Equal(got, v) || got == nil {
			t.Errorf("Get after Set(%q) = %q, %v; want the same non-nil bytes", v, got, err)
		}
	}
	if ok, err := d.Exists(ctx, "k"); err != nil || !ok {
		t.Errorf("Exists(k) = %v, %v; want true, nil", ok, err)
	}
	if existed, err := d.Delete(ctx, "k"); err != nil || !existed {
		t.Errorf("Delete(k) = %v, %v; want true, nil", existed, err)
	}
	if _, err := d.Get(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get after Delete error = %v, want ErrNotFound", err)
	}
}

func TestTTL(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx := testCtx(t, 10*time.Second)

	if err := d.SetWithTTL(ctx, "t", []byte("v"), 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rem, has, err := d.TTL(ctx, "t")
	if err != nil || !has || rem != 1500*time.Millisecond {
		t.Errorf("TTL after SetWithTTL(1.5s) = %v, %v, %v; want 1.5s, true, nil", rem, has, err)
	}
	m.FastForward(time.Second)
	if rem, has, err := d.TTL(ctx, "t"); err != nil || !has || rem != 500*time.Millisecond {
		t.Errorf("TTL 1s later = %v, %v, %v; want 500ms, true, nil", rem, has, err)
	}
	m.FastForward(500 * time.Millisecond)
	if _, err := d.Get(ctx, "t"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get after expiry error = %v, want ErrNotFound", err)
	}
	if _, _, err := d.TTL(ctx, "t"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("TTL after expiry error = %v, want ErrNotFound", err)
	}

	// A sub-millisecond remainder is rounded up, never down to "no TTL".
	if err := d.SetWithTTL(ctx, "r", []byte("v"), 1200*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if got := m.TTL("r"); got != 2*time.Millisecond {
		t.Errorf("redis TTL after SetWithTTL(1.2ms) = %v, want 2ms", got)
	}

	// Set clears a TTL.
	if err := d.SetWithTTL(ctx, "s", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "s", []byte("w")); err != nil {
		t.Fatal(err)
	}
	if rem, has, err := d.TTL(ctx, "s"); err != nil || has || rem != 0 {
		t.Errorf("TTL after Set = %v, %v, %v; want 0, false, nil", rem, has, err)
	}

	// Expire.
	if err := d.Expire(ctx, "missing", time.Minute); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Expire(missing) error = %v, want ErrNotFound", err)
	}
	if err := d.Expire(ctx, "s", 2*time.Second); err != nil {
		t.Fatalf("Expire(s): %v", err)
	}
	if rem, has, err := d.TTL(ctx, "s"); err != nil || !has || rem != 2*time.Second {
		t.Errorf("TTL after Expire(2s) = %v, %v, %v; want 2s, true, nil", rem, has, err)
	}

	// Persist.
	if _, err := d.Persist(ctx, "missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Persist(missing) error = %v, want ErrNotFound", err)
	}
	if had, err := d.Persist(ctx, "s"); err != nil || !had {
		t.Errorf("Persist(s with TTL) = %v, %v; want true, nil", had, err)
	}
	if had, err := d.Persist(ctx, "s"); err != nil || had {
		t.Errorf("Persist(s without TTL) = %v, %v; want false, nil", had, err)
	}
	m.FastForward(time.Hour)
	if got, err := d.Get(ctx, "s"); err != nil || string(got) != "w" {
		t.Errorf("Get(s) after Persist and an hour = %q, %v; want \"w\"", got, err)
	}
	if rem, has, err := d.TTL(ctx, "s"); err != nil || has || rem != 0 {
		t.Errorf("TTL after Persist = %v, %v, %v; want 0, false, nil", rem, has, err)
	}
}

func TestKeyPrefixIsolatesNamespaces(t *testing.T) {
	m := startMiniredis(t)
	a := newDriver(t, m.Addr(), map[string]any{"key_prefix": "a:"}, nil)
	b := newDriver(t, m.Addr(), map[string]any{"key_prefix": "b:"}, nil)
	ctx := testCtx(t, 10*time.Second)

	for _, k := range []string{"x1", "x2", "y"} {
		if err := a.Set(ctx, k, []byte("from a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Set(ctx, "x9", []byte("from b")); err != nil {
		t.Fatal(err)
	}
	if got := m.Keys(); !slices.Equal(got, []string{"a:x1", "a:x2", "a:y", "b:x9"}) {
		t.Errorf("redis keys = %v, want a:x1 a:x2 a:y b:x9", got)
	}
	if _, err := b.Get(ctx, "x1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("b.Get(x1) error = %v, want ErrNotFound", err)
	}
	page, next, err := a.Scan(ctx, "x", "", 10, true)
	if err != nil || next != "" {
		t.Fatalf("a.Scan(x) = %v, %q, %v", page, next, err)
	}
	want := []sdk.Entry{{Key: "x1", Value: []byte("from a")}, {Key: "x2", Value: []byte("from a")}}
	if !slices.EqualFunc(page, want, entryEqual) {
		t.Errorf("a.Scan(x) = %v, want %v", page, want)
	}
	if n, err := a.Count(ctx, ""); err != nil || n != 3 {
		t.Errorf("a.Count(\"\") = %d, %v; want 3", n, err)
	}
	if n, err := b.Count(ctx, "x"); err != nil || n != 1 {
		t.Errorf("b.Count(x) = %d, %v; want 1", n, err)
	}
}

func TestBatch(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx := testCtx(t, 10*time.Second)

	entries := []sdk.Entry{{Key: "b1", Value: []byte("1")}, {Key: "b2", Value: []byte{}}, {Key: "b3", Value: []byte("3")}}
	if err := d.BatchSet(ctx, entries, 0); err != nil {
		t.Fatal(err)
	}
	if got := m.TTL("b1"); got != 0 {
		t.Errorf("TTL of b1 after BatchSet without ttl = %v, want none", got)
	}
	values, found, err := d.BatchGet(ctx, []string{"b3", "nope", "b1", "b2"})
	if err != nil {
		t.Fatal(err)
	}
	wantValues := [][]byte{[]byte("3"), nil, []byte("1"), {}}
	wantFound := []bool{true, false, true, true}
	if !slices.Equal(found, wantFound) || !slices.EqualFunc(values, wantValues, bytes.Equal) || values[1] != nil {
		t.Errorf("BatchGet = %q, %v; want %q, %v", values, found, wantValues, wantFound)
	}

	if err := d.BatchSet(ctx, []sdk.Entry{{Key: "t1", Value: []byte("x")}, {Key: "t2", Value: []byte("y")}}, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"t1", "t2"} {
		if got := m.TTL(k); got != 3*time.Second {
			t.Errorf("TTL of %s after BatchSet(ttl 3s) = %v, want 3s", k, got)
		}
	}

	existed, err := d.BatchDelete(ctx, []string{"b1", "nope", "b1", "t2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, true}; !slices.Equal(existed, want) {
		t.Errorf("BatchDelete existed = %v, want %v", existed, want)
	}
	if m.Exists("b1") || m.Exists("t2") || !m.Exists("b2") {
		t.Errorf("after BatchDelete redis holds %v", m.Keys())
	}

	// Empty batches are no-ops with well-formed results.
	if err := d.BatchSet(ctx, nil, 0); err != nil {
		t.Errorf("BatchSet(nil): %v", err)
	}
	if v, f, err := d.BatchGet(ctx, nil); err != nil || len(v) != 0 || len(f) != 0 {
		t.Errorf("BatchGet(nil) = %v, %v, %v", v, f, err)
	}
	if e, err := d.BatchDelete(ctx, []string{}); err != nil || len(e) != 0 {
		t.Errorf("BatchDelete(empty) = %v, %v", e, err)
	}
}

func entryEqual(a, b sdk.Entry) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }

// TestHugeTTL checks that a TTL at the largest Go duration (what the SDK
// hands over for a protobuf Duration of 300 years) is kept on SetWithTTL,
// BatchSet and Expire: rounding it up to whole milliseconds once overflowed,
// so SET stored the key without expiry and PEXPIRE deleted it.
func TestHugeTTL(t *testing.T) {
	const huge = time.Duration(math.MaxInt64)
	const sane = 290 * 365 * 24 * time.Hour
	for name, addr := range map[string]func(t *testing.T) string{
		"miniredis":    func(t *testing.T) string { return startMiniredis(t).Addr() },
		"redis-server": func(t *testing.T) string { return startRedisServer(t) },
	} {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, addr(t), nil, nil)
			ctx := testCtx(t, 10*time.Second)
			if err := d.SetWithTTL(ctx, "set", []byte("v"), huge); err != nil {
				t.Fatalf("SetWithTTL(huge): %v", err)
			}
			if err := d.BatchSet(ctx, []sdk.Entry{{Key: "batch", Value: []byte("v")}}, huge); err != nil {
				t.Fatalf("BatchSet(huge): %v", err)
			}
			if err := d.Set(ctx, "expire", []byte("v")); err != nil {
				t.Fatal(err)
			}
			if err := d.Expire(ctx, "expire", huge); err != nil {
				t.Fatalf("Expire(huge): %v", err)
			}
			for _, k := range []string{"set", "batch", "expire"} {
				if got, err := d.Get(ctx, k); err != nil || string(got) != "v" {
					t.Errorf("Get(%s) after a huge TTL = %q, %v; want \"v\"", k, got, err)
				}
				if rem, has, err := d.TTL(ctx, k); err != nil || !has || rem < sane {
					t.Errorf("TTL(%s) after a huge TTL = %v, %v, %v; want at least %v, true, nil", k, rem, has, err, sane)
				}
			}
		})
	}
}
