package redis_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/capability"
)

func TestDeclaresAuthCapabilities(t *testing.T) {
	got := sdk.Capabilities(redis.New())
	for _, want := range []capability.Name{capability.AuthBackendCredentials, capability.AuthRotation} {
		if !containsName(got, want) {
			t.Errorf("Capabilities = %v, want %s among them", got, want)
		}
	}
}

func containsName(ns []capability.Name, n capability.Name) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

// TestRealRedisRotation rotates the credentials of a namespace's ACL user
// under load, against a redis-server whose default user is off: no call
// fails, old and new passwords both work during the roll, and the old
// client is closed when the rotation returns.
func TestRealRedisRotation(t *testing.T) {
	addr := startRedisServer(t, "--user", "admin", "on", ">admin-Pa55", "~*", "&*", "+@all", "--user", "default", "off")
	admin := goredis.NewClient(&goredis.Options{Addr: addr, Username: "admin", Password: "admin-Pa55"})
	defer admin.Close()
	ctx := testCtx(t, 30*time.Second)
	acl := func(args ...any) {
		t.Helper()
		if err := admin.Do(ctx, append([]any{"ACL", "SETUSER"}, args...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	acl("ns-a", "on", ">old-Pa55", "resetkeys", "~a:*", "resetchannels", "&a:*", "+@all", "-@dangerous")
	acl("ns-b", "on", ">b-Pa55", "resetkeys", "~b:*", "resetchannels", "&b:*", "+@all", "-@dangerous")

	d := newDriver(t, addr, map[string]any{"key_prefix": "a:", "pool_size": 10.0}, map[string]string{"username": "ns-a", "password": "old-Pa55"})
	old := redis.ClientOf(d)

	var stop atomic.Bool
	var ops, fails atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("w%d-%d", w, i%50)
				err := d.Set(ctx, k, []byte("v"))
				if err == nil {
					_, err = d.Get(ctx, k)
				}
				ops.Add(1)
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	waitOps := func(n int64) {
		t.Helper()
		for target := ops.Load() + n; ops.Load() < target; {
			if ctx.Err() != nil {
				t.Fatal(ctx.Err())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitOps(200)
	acl("ns-a", ">new-Pa55") // both passwords valid during the roll
	if err := d.RotateCredentials(ctx, map[string]string{"username": "ns-a", "password": "new-Pa55"}); err != nil {
		t.Fatalf("RotateCredentials: %v", err)
	}
	if err := old.Ping(ctx).Err(); !errors.Is(err, goredis.ErrClosed) {
		t.Errorf("the old client still works after RotateCredentials returned: %v", err)
	}
	acl("ns-a", "<old-Pa55") // revoke the old password
	waitOps(500)
	stop.Store(true)
	wg.Wait()
	if n := fails.Load(); n > 0 {
		t.Errorf("%d of %d calls failed across the rotation; first: %v", n, ops.Load(), firstErr.Load())
	}
	oldUser := goredis.NewClient(&goredis.Options{Addr: addr, Username: "ns-a", Password: "old-Pa55", MaxRetries: -1})
	defer oldUser.Close()
	if err := oldUser.Ping(ctx).Err(); !goredis.IsAuthError(err) {
		t.Errorf("the old password after revocation: PING = %v, want WRONGPASS", err)
	}

	t.Run("rejected credentials keep the old ones", func(t *testing.T) {
		err := d.RotateCredentials(ctx, map[string]string{"username": "ns-a", "password": "wr0ng-guess"})
		if !errors.Is(err, sdk.ErrUnauthenticated) || strings.Contains(err.Error(), "wr0ng-guess") {
			t.Errorf("RotateCredentials(wrong) = %v, want ErrUnauthenticated without the password", err)
		}
		if err := d.Set(ctx, "still", []byte("v")); err != nil {
			t.Errorf("Set after a failed rotation: %v", err)
		}
		err = d.RotateCredentials(ctx, map[string]string{"username": "ns-a"})
		if configField(err) != "credentials.password" {
			t.Errorf("RotateCredentials(no password) = %v, want a config error naming credentials.password", err)
		}
	})
	t.Run("a namespace user stays in its namespace", func(t *testing.T) {
		b := newDriver(t, addr, map[string]any{"key_prefix": "a:"}, map[string]string{"username": "ns-b", "password": "b-Pa55"})
		if err := b.Set(ctx, "k", []byte("v")); status.Code(err) != codes.PermissionDenied {
			t.Errorf("ns-b writing a:k: %v, want PermissionDenied", err)
		}
		u := goredis.NewClient(&goredis.Options{Addr: addr, Username: "ns-a", Password: "new-Pa55", MaxRetries: -1})
		defer u.Close()
		if err := u.FlushAll(ctx).Err(); !goredis.IsPermissionError(err) {
			t.Errorf("ns-a FLUSHALL: %v, want NOPERM", err)
		}
		if err := u.Set(ctx, "b:k", "v", 0).Err(); !goredis.IsPermissionError(err) {
			t.Errorf("ns-a SET b:k: %v, want NOPERM", err)
		}
	})
}
