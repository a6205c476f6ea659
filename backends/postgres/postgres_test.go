package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/postgres"
	"github.com/prism-suite/prism/backends/sdk"
)

func code(err error) codes.Code { return status.Code(sdk.ToStatus(err)) }

// TestPostgres runs the driver against a real PostgreSQL started by the
// test (skipped when its binaries are absent).
func TestPostgres(t *testing.T) {
	s := startServer(t)

	t.Run("basic", func(t *testing.T) {
		d := newDriver(t, s, nil)
		ctx := testCtx(t, 10*time.Second)
		for _, k := range []string{"a", "nul\x00byte", "ünï"} {
			if err := d.Set(ctx, k, []byte("v-"+k)); err != nil {
				t.Fatal(err)
			}
			if v, err := d.Get(ctx, k); err != nil || string(v) != "v-"+k {
				t.Errorf("Get(%q) = %q, %v", k, v, err)
			}
		}
		if err := d.Set(ctx, "empty", nil); err != nil {
			t.Fatal(err)
		}
		if v, err := d.Get(ctx, "empty"); err != nil || v == nil || len(v) != 0 {
			t.Errorf("Get(empty) = %#v, %v; want an empty, non-nil value", v, err)
		}
		if _, err := d.Get(ctx, "missing"); code(err) != codes.NotFound {
			t.Errorf("Get(missing) error = %v, want NotFound", err)
		}
		if existed, err := d.Delete(ctx, "a"); err != nil || !existed {
			t.Errorf("Delete(a) = %v, %v; want true", existed, err)
		}
		if existed, err := d.Delete(ctx, "a"); err != nil || existed {
			t.Errorf("Delete(a) again = %v, %v; want false", existed, err)
		}
	})

	t.Run("expiry exact at read without a sweep", func(t *testing.T) {
		d := newDriver(t, s, map[string]any{"sweep_interval": "0s"})
		ctx := testCtx(t, 20*time.Second)
		for _, k := range []string{"p/1", "p/2"} {
			if err := d.SetWithTTL(ctx, k, []byte("v"), 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if rem, has, err := d.TTL(ctx, "p/1"); err != nil || !has || rem <= 0 || rem > 100*time.Millisecond {
			t.Errorf("TTL = %v, %v, %v; want (0, 100ms], true", rem, has, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := d.Get(ctx, "p/1"); code(err) == codes.NotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("p/1 still readable 10s after a 100ms TTL")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond) // p/2 was set after p/1
		if _, err := d.Get(ctx, "p/2"); code(err) != codes.NotFound {
			t.Fatalf("Get(p/2) = %v, want NotFound", err)
		}
		if ok, err := d.Exists(ctx, "p/1"); err != nil || ok {
			t.Errorf("Exists(expired) = %v, %v", ok, err)
		}
		if err := d.Expire(ctx, "p/1", time.Minute); code(err) != codes.NotFound {
			t.Errorf("Expire(expired) = %v, want NotFound", err)
		}
		if _, err := d.Persist(ctx, "p/1"); code(err) != codes.NotFound {
			t.Errorf("Persist(expired) = %v, want NotFound", err)
		}
		if _, _, err := d.TTL(ctx, "p/1"); code(err) != codes.NotFound {
			t.Errorf("TTL(expired) = %v, want NotFound", err)
		}
		if n, err := d.Count(ctx, "p/"); err != nil || n != 0 {
			t.Errorf("Count(expired) = %d, %v", n, err)
		}
		if page, _, err := d.Scan(ctx, "p/", "", 10, true); err != nil || len(page) != 0 {
			t.Errorf("Scan(expired) = %v, %v", page, err)
		}
		if _, found, err := d.BatchGet(ctx, []string{"p/1"}); err != nil || found[0] {
			t.Errorf("BatchGet(expired) found = %v, %v", found, err)
		}
		if existed, err := d.BatchDelete(ctx, []string{"p/2"}); err != nil || existed[0] {
			t.Errorf("BatchDelete(expired) = %v, %v; want false", existed, err)
		}
		if existed, err := d.Delete(ctx, "p/1"); err != nil || existed {
			t.Errorf("Delete(expired) = %v, %v; want false", existed, err)
		}
		// Overwriting an expired row gives a fresh key without TTL.
		if err := d.SetWithTTL(ctx, "q", []byte("old"), time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if err := d.BatchSet(ctx, []sdk.Entry{{Key: "q", Value: []byte("new")}}, 0); err != nil {
			t.Fatal(err)
		}
		if _, has, err := d.TTL(ctx, "q"); err != nil || has {
			t.Errorf("TTL after overwrite = %v, %v; want no expiry", has, err)
		}
	})

	t.Run("huge ttl", func(t *testing.T) {
		d := newDriver(t, s, nil)
		ctx := testCtx(t, 10*time.Second)
		if err := d.SetWithTTL(ctx, "k", []byte("v"), time.Duration(math.MaxInt64)); err != nil {
			t.Fatalf("SetWithTTL(max duration) = %v", err)
		}
		rem, has, err := d.TTL(ctx, "k")
		if err != nil || !has || rem < 290*365*24*time.Hour {
			t.Errorf("TTL = %v, %v, %v; want about 292 years", rem, has, err)
		}
		if had, err := d.Persist(ctx, "k"); err != nil || !had {
			t.Errorf("Persist = %v, %v; want true", had, err)
		}
		if had, err := d.Persist(ctx, "k"); err != nil || had {
			t.Errorf("Persist again = %v, %v; want false", had, err)
		}
	})

	t.Run("scan literal prefix in key order exactly once", func(t *testing.T) {
		d := newDriver(t, s, nil)
		ctx := testCtx(t, 20*time.Second)
		var want []string
		for i := range 57 {
			k := fmt.Sprintf("a%%_\\/%03d", (i*37)%57)
			want = append(want, k)
			if err := d.Set(ctx, k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []string{"aX_\\/1", "a%x", "b", "a", "a%_\\"} {
			if err := d.Set(ctx, k, nil); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(want)
		var got []string
		cursor := ""
		for range 100 {
			page, next, err := d.Scan(ctx, "a%_\\/", cursor, 10, true)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if string(e.Value) != e.Key {
					t.Errorf("value of %q = %q", e.Key, e.Value)
				}
				got = append(got, e.Key)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("scan got %d keys %v\nwant %d keys %v", len(got), got, len(want), want)
		}
		if n, err := d.Count(ctx, "a%_\\/"); err != nil || n != int64(len(want)) {
			t.Errorf("Count = %d, %v; want %d", n, err, len(want))
		}
		if _, _, err := d.Scan(ctx, "a", "!!not base64", 10, false); code(err) != codes.InvalidArgument {
			t.Errorf("Scan(bad cursor) = %v, want InvalidArgument", err)
		}
	})

	t.Run("batch", func(t *testing.T) {
		d := newDriver(t, s, nil)
		ctx := testCtx(t, 10*time.Second)
		err := d.BatchSet(ctx, []sdk.Entry{{Key: "x", Value: []byte("1")}, {Key: "y", Value: []byte("2")}, {Key: "x", Value: []byte("3")}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		vals, found, err := d.BatchGet(ctx, []string{"x", "z", "y", "x"})
		if err != nil || !slices.Equal(found, []bool{true, false, true, true}) || string(vals[0]) != "3" || string(vals[2]) != "2" {
			t.Errorf("BatchGet = %q, %v, %v", vals, found, err)
		}
		existed, err := d.BatchDelete(ctx, []string{"x", "z", "x", "y"})
		if err != nil || !slices.Equal(existed, []bool{true, false, false, true}) {
			t.Errorf("BatchDelete = %v, %v", existed, err)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		for name, creds := range map[string]map[string]string{
			"wrong password": {"username": "postgres", "password": "wr0ng-secret"},
			"no password":    nil,
		} {
			d := postgres.New()
			err := d.Init(testCtx(t, 5*time.Second), config(s.addr, nil, creds))
			_ = d.Close(context.Background())
			if code(err) != codes.Unauthenticated {
				t.Errorf("%s: Init error = %v, want Unauthenticated", name, err)
			}
			if err != nil && strings.Contains(err.Error(), "wr0ng-secret") {
				t.Errorf("%s: the error shows the password: %v", name, err)
			}
		}
	})

	t.Run("scoped role and rotation", func(t *testing.T) {
		s.psql(t, `CREATE ROLE "prism-scope1" LOGIN PASSWORD 'pw-one'; CREATE SCHEMA "scope-1" AUTHORIZATION "prism-scope1";`+
			`CREATE ROLE "prism-scope1-2" LOGIN PASSWORD 'pw-two' IN ROLE "prism-scope1";`)
		d := postgres.New()
		t.Cleanup(func() { _ = d.Close(context.Background()) })
		ctx := testCtx(t, 10*time.Second)
		if err := d.Init(ctx, config(s.addr, map[string]any{"schema": "scope-1"}, map[string]string{"username": "prism-scope1", "password": "pw-one"})); err != nil {
			t.Fatalf("Init as the scoped role: %v", err)
		}
		if err := d.Set(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		other := postgres.New()
		err := other.Init(ctx, config(s.addr, nil, map[string]string{"username": "prism-scope1", "password": "pw-one"}))
		_ = other.Close(context.Background())
		if code(err) != codes.PermissionDenied {
			t.Errorf("Init of the scoped role on schema public = %v, want PermissionDenied", err)
		}
		if err := d.RotateCredentials(ctx, map[string]string{"username": "prism-scope1-2", "password": "bad"}); code(err) != codes.Unauthenticated {
			t.Errorf("RotateCredentials(bad) = %v, want Unauthenticated", err)
		}
		if err := d.RotateCredentials(ctx, map[string]string{"username": "prism-scope1-2", "password": "pw-two"}); err != nil {
			t.Fatalf("RotateCredentials = %v", err)
		}
		s.psql(t, `ALTER ROLE "prism-scope1" NOLOGIN; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'prism-scope1';`)
		if v, err := d.Get(ctx, "k"); err != nil || string(v) != "v" {
			t.Errorf("Get after rotation and revocation = %q, %v", v, err)
		}
	})

	t.Run("config", func(t *testing.T) {
		// The longest key accepted must fit the primary key's index.
		d := newDriver(t, s, map[string]any{"max_key_bytes": float64(postgres.MaxKeyBytesCeiling)})
		var long strings.Builder // incompressible, so the index cannot shrink it
		for i := 0; long.Len() < postgres.MaxKeyBytesCeiling; i++ {
			fmt.Fprintf(&long, "%x", sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
		}
		if err := d.Set(testCtx(t, 5*time.Second), long.String()[:postgres.MaxKeyBytesCeiling], []byte("v")); err != nil {
			t.Errorf("Set of a key of max_key_bytes = %v", err)
		}
		for field, v := range map[string]any{"max_key_bytes": 4096.0, "schema": "no-such-schema", "database": "no_such_db", "pool_size": 0.0, "bogus": true, "sslmode": "sometimes"} {
			d := postgres.New()
			err := d.Init(testCtx(t, 5*time.Second), config(s.addr, map[string]any{field: v}, s.admin()))
			_ = d.Close(context.Background())
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Field != field {
				t.Errorf("Init(%s=%v) = %v, want a config error naming %s", field, v, err, field)
			}
		}
	})

	t.Run("namespaces apart by default", func(t *testing.T) {
		ctx := testCtx(t, 10*time.Second)
		var ds []*postgres.Driver
		for _, ns := range []string{"ns-a", "ns-b"} {
			d := postgres.New()
			cfg := config(s.addr, nil, s.admin())
			cfg.Namespace = ns
			if err := d.Init(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = d.Close(context.Background()) })
			ds = append(ds, d)
		}
		if err := ds[0].Set(ctx, "shared", []byte("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := ds[1].Get(ctx, "shared"); code(err) != codes.NotFound {
			t.Errorf("Get in ns-b of a key set in ns-a = %v, want NotFound", err)
		}
	})

	t.Run("deadline and unavailable", func(t *testing.T) {
		d := newDriver(t, s, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		<-ctx.Done()
		if _, err := d.Get(ctx, "k"); code(err) != codes.DeadlineExceeded {
			t.Errorf("Get past the deadline = %v, want DeadlineExceeded", err)
		}
		down := postgres.New()
		err := down.Init(testCtx(t, 5*time.Second), config("127.0.0.1:1", nil, s.admin()))
		if code(err) != codes.Unavailable {
			t.Errorf("Init against a closed port = %v, want Unavailable", err)
		}
		if h := d.Health(testCtx(t, 5*time.Second)); h.Status != sdk.Healthy || h.Details["server_version"] == "" || h.Details["pool_size"] != "10" {
			t.Errorf("Health = %+v, want Healthy with pool stats and server_version", h)
		}
	})
}

func TestTableFor(t *testing.T) {
	long := strings.Repeat("n", 100)
	for ns, want := range map[string]string{"": "prism_kv", "default": "prism_kv_default", "a-b": "prism_kv_a-b"} {
		if got := postgres.TableFor(ns); got != want {
			t.Errorf("TableFor(%q) = %q, want %q", ns, got, want)
		}
	}
	a, b := postgres.TableFor(long), postgres.TableFor(long+"x")
	if len(a) > 63 || len(b) > 63 || a == b {
		t.Errorf("TableFor of long names = %q, %q: want distinct names of at most 63 bytes", a, b)
	}
}
