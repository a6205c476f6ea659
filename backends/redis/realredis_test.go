package redis_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

// TestRealRedis runs what miniredis cannot show against a redis-server from
// PATH (skipped without one): SCAN with real cursors (pages of any size,
// possible repeats), real expiry, INFO server, SELECT limits and ACLs.
func TestRealRedis(t *testing.T) {
	addr := startRedisServer(t)

	t.Run("escaped pattern", func(t *testing.T) { checkEscapedPattern(t, addr) })
	t.Run("scan exactly once", func(t *testing.T) {
		d := newDriver(t, addr, map[string]any{"db": 1.0}, nil)
		scanExactlyOnce(t, testCtx(t, time.Minute), d, 2000, 7)
	})
	t.Run("scan cost", func(t *testing.T) {
		if testing.Short() {
			t.Skip("measurement")
		}
		measureScan(t, newDriver(t, addr, map[string]any{"db": 2.0}, nil), 10_000, 100)
	})
	t.Run("server version", func(t *testing.T) {
		d := newDriver(t, addr, nil, nil)
		v := d.Describe().Info["server_version"]
		if v == "" || strings.ContainsAny(v, " \r\n") {
			t.Errorf("Describe server_version = %q, want the server's redis_version", v)
		}
		if h := d.Health(testCtx(t, 3*time.Second)); h.Status != sdk.Healthy || h.Details["server_version"] != v {
			t.Errorf("Health = %+v, want Healthy with server_version %q", h, v)
		}
	})
	t.Run("db out of range", func(t *testing.T) {
		d := redis.New()
		defer d.Close(t.Context())
		err := d.Init(testCtx(t, 3*time.Second), config(addr, map[string]any{"db": 99.0}, nil))
		if got := configField(err); got != "db" {
			t.Errorf("Init(db 99) error = %v, want a config error for db", err)
		}
	})
	t.Run("expiry in real time", func(t *testing.T) {
		d := newDriver(t, addr, map[string]any{"db": 3.0}, nil)
		ctx := testCtx(t, 5*time.Second)
		if err := d.SetWithTTL(ctx, "k", []byte("v"), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if rem, has, err := d.TTL(ctx, "k"); err != nil || !has || rem <= 0 || rem > 50*time.Millisecond {
			t.Errorf("TTL = %v, %v, %v; want (0, 50ms], true", rem, has, err)
		}
		time.Sleep(120 * time.Millisecond)
		if _, err := d.Get(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Get after expiry error = %v, want ErrNotFound", err)
		}
		if _, err := d.Persist(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Persist after expiry error = %v, want ErrNotFound", err)
		}
	})
}

func TestRealRedisAuth(t *testing.T) {
	const secret = "s3cret-Pa55"
	addr := startRedisServer(t, "--requirepass", secret)
	admin := goredis.NewClient(&goredis.Options{Addr: addr, Password: secret})
	defer admin.Close()
	ctx := testCtx(t, 10*time.Second)
	for _, acl := range [][]any{
		{"ACL", "SETUSER", "alice", "on", ">alice-Pa55", "~*", "+@all", "-get"},
		{"ACL", "SETUSER", "carol", "on", ">carol-Pa55", "~*", "-@all"},
	} {
		if err := admin.Do(ctx, acl...).Err(); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name  string
		creds map[string]string
		want  string
	}{
		{"no password", nil, "redis requires a password and none was given"},
		{"wrong password", map[string]string{"password": "wr0ng-guess"}, `redis rejected the credentials for user "default"`},
		{"wrong user password", map[string]string{"username": "alice", "password": "wr0ng-guess"}, `redis rejected the credentials for user "alice"`},
		{"user may not ping", map[string]string{"username": "carol", "password": "carol-Pa55"}, `redis user "carol" may not run PING`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := redis.New()
			defer d.Close(t.Context())
			err := d.Init(testCtx(t, 3*time.Second), config(addr, nil, tc.creds))
			if !errors.Is(err, sdk.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init error = %v, want ErrUnauthenticated saying %q", err, tc.want)
			}
			for _, pw := range []string{secret, "wr0ng-guess", "alice-Pa55", "carol-Pa55"} {
				if strings.Contains(err.Error(), pw) {
					t.Errorf("Init error %q shows a password", err)
				}
			}
		})
	}

	d := newDriver(t, addr, nil, map[string]string{"username": "alice", "password": "alice-Pa55"})
	if err := d.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("Set as alice: %v", err)
	}
	if _, err := d.Get(ctx, "k"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Get as alice (-get) error = %v, want PermissionDenied", err)
	}
}
