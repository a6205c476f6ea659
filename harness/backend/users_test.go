package backend_test

import (
	"context"
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
			// Suspend refuses the user and its second credentials and drops
			// a connection open as it; Restore brings both back.
			open := connectAs(t, tc.kind, inst.Info().Address, a2)
			if err := users.Suspend(ctx, "ns-a"); err != nil {
				t.Fatal(err)
			}
			if err := users.Authenticate(ctx, a2); err == nil {
				t.Errorf("a suspended user is accepted")
			}
			if err := open(); err == nil {
				t.Errorf("a connection open as a suspended user still works")
			}
			if err := users.Restore(ctx, "ns-a"); err != nil {
				t.Fatal(err)
			}
			if err := users.Authenticate(ctx, a2); err != nil {
				t.Errorf("a restored user is refused: %v", err)
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

// connectAs opens a connection to the server at addr as c and returns a
// function that uses it once (without reconnecting).
func connectAs(t *testing.T, kind backend.Kind, addr string, c backend.Credentials) func() error {
	t.Helper()
	if kind == backend.Redis {
		cl := redis.NewClient(&redis.Options{Addr: addr, Username: c.Username, Password: c.Password, MaxRetries: -1,
			PoolSize: 1, DisableIdentity: true, Protocol: 2})
		t.Cleanup(func() { cl.Close() })
		if err := cl.Ping(t.Context()).Err(); err != nil {
			t.Fatalf("connect as %s: %v", c.Username, err)
		}
		return func() error { return cl.Ping(t.Context()).Err() }
	}
	nc, err := nats.Connect("nats://"+addr, nats.UserInfo(c.Username, c.Password), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect as %s: %v", c.Username, err)
	}
	t.Cleanup(nc.Close)
	return func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		for nc.IsConnected() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond) // the server closes it a moment after the reload; poll with a deadline
		}
		if nc.IsConnected() {
			return nil
		}
		return nats.ErrConnectionClosed
	}
}

func denied(err error) bool {
	return redis.IsPermissionError(err) || errors.Is(err, nats.ErrPermissionViolation)
}
