package redis_test

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

// globPrefix has every glob character; keys under it are found only when
// the prefix is escaped.
const globPrefix = `a*[b]?\`

// globDecoys would match the unescaped pattern globPrefix+"*" (or a sloppy
// escape of it) but do not start with globPrefix.
var globDecoys = []string{`aXXbY\`, `aXXbY\tail`, `ab]?\`, `a*b?\x`, `a*[b]?`, `a*[b]x\`, `a*[b]?/`}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"":          "",
		"plain:key": "plain:key",
		globPrefix:  `a\*\[b\]\?\\`,
		"ü-^[!]":    `ü-^\[!\]`,
	} {
		if got := redis.EscapeGlob(in); got != want {
			t.Errorf("EscapeGlob(%q) = %q, want %q", in, got, want)
		}
	}
	// path.Match shares Redis's glob syntax for these characters.
	for _, s := range append([]string{globPrefix, "x", `\\`, "[]", "*?"}, globDecoys...) {
		for _, other := range append([]string{globPrefix}, globDecoys...) {
			got, err := path.Match(redis.EscapeGlob(s), other)
			if err != nil || got != (s == other) {
				t.Errorf("path.Match(EscapeGlob(%q), %q) = %v, %v; want %v", s, other, got, err, s == other)
			}
		}
	}
}

func TestEscapedPatternOnMiniredis(t *testing.T) {
	m := startMiniredis(t)
	checkEscapedPattern(t, m.Addr())
}

// checkEscapedPattern asks the server itself (no driver-side filtering)
// which keys MATCH EscapeGlob(globPrefix)+"*".
func checkEscapedPattern(t *testing.T, addr string) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	want := []string{globPrefix, globPrefix + "1", globPrefix + "tail*"}
	for _, k := range append(slices.Clone(want), globDecoys...) {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	iter := c.Scan(ctx, 0, redis.EscapeGlob(globPrefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		got = append(got, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	slices.Sort(want)
	if !slices.Equal(got, slices.Compact(got)) || !slices.Equal(got, want) {
		t.Errorf("SCAN MATCH escaped prefix = %q, want %q", got, want)
	}
}

// scanAll pages through prefix and returns every entry, failing on a page
// longer than limit or a repeated key.
func scanAll(t *testing.T, ctx context.Context, d *redis.Driver, prefix string, limit int, withValues bool, between func(page int)) []sdk.Entry {
	t.Helper()
	var all []sdk.Entry
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		entries, next, err := d.Scan(ctx, prefix, cursor, limit, withValues)
		if err != nil {
			t.Fatalf("Scan page %d: %v", page, err)
		}
		if len(entries) > limit {
			t.Fatalf("Scan page %d has %d entries, limit %d", page, len(entries), limit)
		}
		for _, e := range entries {
			if seen[e.Key] {
				t.Fatalf("Scan returned %q twice", e.Key)
			}
			seen[e.Key] = true
		}
		all = append(all, entries...)
		if next == "" {
			return all
		}
		if page > 100_000 {
			t.Fatal("Scan does not end")
		}
		cursor = next
		if between != nil {
			between(page)
		}
	}
}

func TestScanExactlyOnceWithGlobPrefix(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx := testCtx(t, time.Minute)
	scanExactlyOnce(t, ctx, d, 2000, 7)
}

func scanExactlyOnce(t *testing.T, ctx context.Context, d *redis.Driver, n, limit int) {
	t.Helper()
	var entries []sdk.Entry
	for i := range n {
		entries = append(entries, sdk.Entry{Key: globPrefix + key(i), Value: []byte(fmt.Sprint("v", i))})
	}
	for i := 0; i < n; i += 500 {
		if err := d.BatchSet(ctx, entries[i:min(i+500, n)], 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range globDecoys {
		if err := d.Set(ctx, k, []byte("decoy")); err != nil {
			t.Fatal(err)
		}
	}
	for _, withValues := range []bool{false, true} {
		got := scanAll(t, ctx, d, globPrefix, limit, withValues, nil)
		if len(got) != n {
			t.Fatalf("Scan(withValues=%v) returned %d keys, want %d", withValues, len(got), n)
		}
		for i, e := range got { // pages come in byte order
			want := entries[i]
			if !withValues {
				want.Value = nil
			}
			if !entryEqual(e, want) {
				t.Fatalf("Scan(withValues=%v) entry %d = %q=%q, want %q=%q", withValues, i, e.Key, e.Value, want.Key, want.Value)
			}
		}
	}
	if c, err := d.Count(ctx, globPrefix); err != nil || c != int64(n) {
		t.Errorf("Count(%q) = %d, %v; want %d", globPrefix, c, err, n)
	}
}

func TestScanWithChangesBetweenPages(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx := testCtx(t, time.Minute)
	const n = 300
	for i := range n {
		if err := d.Set(ctx, "p/"+key(i*10), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	removed := map[string]bool{}
	added := map[string]bool{}
	got := scanAll(t, ctx, d, "p/", 10, true, func(page int) {
		// Between pages, delete a key already returned and one not yet
		// returned, and add one before and one after the cursor.
		for _, i := range []int{page * 10, (n - 1 - page) * 10} {
			k := "p/" + key(i)
			if existed, _ := d.Delete(ctx, k); existed {
				removed[k] = true
			}
		}
		for _, k := range []string{"p/" + key(page*10+5), "p/" + key((n-1-page)*10+5)} {
			if err := d.Set(ctx, k, []byte("new")); err != nil {
				t.Fatal(err)
			}
			added[k] = true
		}
	})
	returned := map[string]bool{}
	for _, e := range got {
		returned[e.Key] = true
	}
	original := map[string]bool{}
	for i := range n {
		k := "p/" + key(i*10)
		original[k] = true
		if !removed[k] && !returned[k] {
			t.Errorf("key %q, present for the whole scan, was not returned", k)
		}
	}
	for k := range returned {
		if !added[k] && !original[k] {
			t.Errorf("Scan returned %q, which never existed", k)
		}
	}
	if !slices.IsSortedFunc(got, func(a, b sdk.Entry) int { return cmpString(a.Key, b.Key) }) {
		t.Error("Scan pages are not in byte order")
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestScanEdges(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx := testCtx(t, 10*time.Second)

	page, next, err := d.Scan(ctx, "none/", "", 5, false)
	if err != nil || len(page) != 0 || next != "" {
		t.Errorf("Scan(no keys) = %v, %q, %v; want empty, \"\", nil", page, next, err)
	}
	for i := range 5 {
		if err := d.Set(ctx, "e/"+key(i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// Exactly limit keys: one page and no cursor.
	page, next, err = d.Scan(ctx, "e/", "", 5, false)
	if err != nil || len(page) != 5 || next != "" {
		t.Errorf("Scan(5 keys, limit 5) = %d keys, %q, %v; want 5, \"\", nil", len(page), next, err)
	}
	// Empty prefix scans everything.
	if err := d.Set(ctx, "other", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if all := scanAll(t, ctx, d, "", 2, false, nil); len(all) != 6 {
		t.Errorf("Scan(\"\") returned %d keys, want 6", len(all))
	}
	if c, err := d.Count(ctx, ""); err != nil || c != 6 {
		t.Errorf("Count(\"\") = %d, %v; want 6", c, err)
	}

	_, next, err = d.Scan(ctx, "e/", "", 2, false)
	if err != nil || next == "" {
		t.Fatalf("Scan(limit 2) = %q, %v; want a cursor", next, err)
	}
	for _, bad := range []struct{ prefix, cursor string }{
		{"e/", "garbage"},
		{"e/", "r1.!!!"},
		{"other/", next}, // a cursor of another prefix
	} {
		if _, _, err := d.Scan(ctx, bad.prefix, bad.cursor, 2, false); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("Scan(%q, cursor %q) error = %v, want ErrInvalid", bad.prefix, bad.cursor, err)
		}
	}
}

// TestScanCost measures a full scan of 10 000 keys in pages of 100 (every
// page SCANs the whole prefix). It reports; it does not gate.
func TestScanCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	measureScan(t, d, 10_000, 100)
}

func measureScan(t *testing.T, d *redis.Driver, n, limit int) {
	t.Helper()
	ctx := testCtx(t, 5*time.Minute)
	batch := make([]sdk.Entry, 0, 1000)
	for i := range n {
		batch = append(batch, sdk.Entry{Key: "cost/" + key(i), Value: []byte("v")})
		if len(batch) == cap(batch) || i == n-1 {
			if err := d.BatchSet(ctx, batch, 0); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	start := time.Now()
	got := scanAll(t, ctx, d, "cost/", limit, false, nil)
	took := time.Since(start)
	if len(got) != n {
		t.Fatalf("scan returned %d keys, want %d", len(got), n)
	}
	t.Logf("full scan of %d keys in pages of %d: %v (%d pages, %v per page)", n, limit, took, n/limit, took/time.Duration(n/limit))
}
