package auth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
)

// epoch is the fake clock's start: a whole second, so second-granular
// claims sit exactly on skew edges.
var epoch = time.Unix(1_900_000_000, 0)

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is an issuer and an authorizer that trusts it, on one fake clock.
type env struct {
	iss   *oidc.Issuer
	a     *auth.Authorizer
	clock *clock
	logs  *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// setup starts an issuer and an authorizer for it; mut changes the config
// before New.
func setup(t testing.TB, mut func(*auth.Config), opts ...auth.Option) *env {
	t.Helper()
	c := newClock()
	io := oidc.DefaultOptions()
	io.Now = c.Now
	io.Key = sharedKey(t, "key-1")
	iss, err := oidc.Start(io)
	if err != nil {
		t.Fatalf("start issuer: %v", err)
	}
	t.Cleanup(iss.Close)
	cfg := auth.DefaultConfig()
	cfg.Issuer, cfg.Audience = iss.URL(), iss.Audience()
	cfg.HTTPTimeout = 5 * time.Second
	if mut != nil {
		mut(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(cfg, append([]auth.Option{auth.WithClock(c.Now), auth.WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatalf("new authorizer: %v", err)
	}
	t.Cleanup(a.Close)
	return &env{iss: iss, a: a, clock: c, logs: logs}
}

var (
	keysMu sync.Mutex
	keys   = map[string]*oidc.Key{}
)

// sharedKey returns the process's RS256 key for kid, generating it once:
// RSA key generation dominates the run time of tests that start an issuer
// per case.
func sharedKey(t testing.TB, kid string) *oidc.Key {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k := keys[kid]; k != nil {
		return k
	}
	k, err := oidc.NewKey("RS256", kid)
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	keys[kid] = k
	return k
}

// wantCode fails unless err's gRPC code is want.
func wantCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

// wantUnauthenticated checks the kind, the code and the generic message.
func wantUnauthenticated(t testing.TB, err error) *auth.Error {
	t.Helper()
	wantCode(t, err, codes.Unauthenticated)
	var e *auth.Error
	if !errors.As(err, &e) || !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("got %T %v, want *auth.Error of kind ErrUnauthenticated", err, err)
	}
	if msg := status.Convert(err).Message(); msg != "invalid or missing credentials" {
		t.Fatalf("client message %q, want the generic one", msg)
	}
	return e
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond every few milliseconds until it holds or 5 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: did not happen within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
