package backend_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/harness/backend"
)

// TestUsers creates scoped users on every instance that can manage them,
// rotates one and probes what a scoped user must not do.
func TestUsers(t *testing.T) {
	cases := []struct {
		kind     backend.Kind
		provider backend.Provider
	}{
		{backend.Redis, backend.Process}, {backend.Redis, backend.Container},
		{backend.NATS, backend.Embedded}, {backend.NATS, backend.Process}, {backend.NATS, backend.Container},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind)+"/"+string(tc.provider), func(t *testing.T) {
			requireProvider(t, tc.kind, tc.provider)
			t.Parallel()
			o := options(t, tc.provider)
			o.Auth = &backend.Credentials{Username: "prism-admin", Password: "admin-s3cret"}
			inst := start(t, tc.kind, o)
			users, err := backend.UsersOf(inst)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxTimeout(t, 30*time.Second)
			a, err := users.AddUser(ctx, "ns-a", "scope-a")
			if err != nil {
				t.Fatal(err)
			}
			if err := users.Authenticate(ctx, a); err != nil {
				t.Fatalf("the new user is refused: %v", err)
			}
			if _, err := users.AddUser(ctx, "ns-b", "scope-b"); err != nil {
				t.Fatal(err)
			}
			a2, err := users.AddCredentials(ctx, "ns-a")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []backend.Credentials{a, a2} {
				if err := users.Authenticate(ctx, c); err != nil {
					t.Errorf("during the roll, %s is refused: %v", c.Username, err)
				}
			}
			if err := users.Revoke(ctx, a); err != nil {
				t.Fatal(err)
			}
			if err := users.Authenticate(ctx, a); err == nil {
				t.Errorf("revoked credentials still accepted")
			}
			if err := users.Authenticate(ctx, a2); err != nil {
				t.Errorf("the new credentials are refused after revoking the old: %v", err)
			}
			write, admin := users.TryOutside(ctx, a2, "scope-b")
			if !denied(write) || !denied(admin) {
				t.Errorf("TryOutside = %v, %v; want both refused for lack of permission", write, admin)
			}
			if creds := users.PluginCredentials(a2); len(creds) != 2 {
				t.Errorf("PluginCredentials = %d entries, want 2", len(creds))
			}
			if cfg := users.ScopeConfig("scope-a"); len(cfg) == 0 {
				t.Errorf("ScopeConfig is empty")
			}
			if out, ok := inst.(backend.Outager); ok {
				if err := out.Down(ctx); err != nil {
					t.Fatal(err)
				}
				if err := out.Up(ctx); err != nil {
					t.Fatal(err)
				}
				if err := users.Authenticate(ctx, a2); err != nil {
					t.Errorf("a user made before an outage is refused after it: %v", err)
				}
				if err := users.Authenticate(ctx, a); err == nil {
					t.Errorf("credentials revoked before an outage are accepted after it")
				}
			}
		})
	}
	t.Run("miniredis", func(t *testing.T) {
		o := options(t, backend.Embedded)
		o.Auth = &backend.Credentials{Username: "prism-admin", Password: "admin-s3cret"}
		if _, err := backend.UsersOf(start(t, backend.Redis, o)); err == nil {
			t.Errorf("miniredis has no ACLs, yet UsersOf gave no error")
		}
	})
}

func denied(err error) bool {
	return redis.IsPermissionError(err) || errors.Is(err, nats.ErrPermissionViolation)
}
