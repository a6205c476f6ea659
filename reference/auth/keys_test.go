package auth_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
)

func mustVerify(t *testing.T, e *env, tok, what string) {
	t.Helper()
	if _, err := e.a.Verify(ctx(t), tok); err != nil {
		t.Fatalf("%s: Verify: %v (%s), want accepted", what, err, reason(err))
	}
}

func TestKeyRotation(t *testing.T) {
	e := setup(t, nil) // refetch interval 1m, max age 5m, on the fake clock
	tok1 := e.iss.MustMint(good(e))
	mustVerify(t, e, tok1, "key-1 token")

	if _, err := e.iss.Rotate("key-2"); err != nil {
		t.Fatal(err)
	}
	tok2 := e.iss.MustMint(good(e))

	// Within the refetch interval the new kid is unknown and no fetch happens.
	_, err := e.a.Verify(ctx(t), tok2)
	if r := wantUnauthenticated(t, err).Reason; r != `unknown kid "key-2"` {
		t.Fatalf("reason %q", r)
	}
	if n := e.iss.JWKSFetches(); n != 1 {
		t.Fatalf("JWKS fetches = %d, want 1 (refetch within the interval)", n)
	}

	// Once the interval has passed, the unknown kid causes one refetch.
	e.clock.Advance(auth.DefaultJWKSRefetchInterval)
	mustVerify(t, e, tok2, "key-2 token after publishing")
	if n := e.iss.JWKSFetches(); n != 2 {
		t.Fatalf("JWKS fetches = %d, want 2", n)
	}
	mustVerify(t, e, tok1, "key-1 token while both keys are published")

	// Removing key-1: once the key set is older than jwks_max_age, it is
	// refreshed in the background and key-1 tokens (cached ones included)
	// are rejected.
	e.iss.Unpublish("key-1")
	e.clock.Advance(auth.DefaultJWKSMaxAge + time.Second)
	eventually(t, "key-1 token rejected after removal", func() bool {
		_, err := e.a.Verify(ctx(t), tok1)
		return err != nil
	})
	_, err = e.a.Verify(ctx(t), tok1)
	if r := wantUnauthenticated(t, err).Reason; r != `unknown kid "key-1"` {
		t.Fatalf("reason %q", r)
	}
	mustVerify(t, e, tok2, "key-2 token after key-1 was removed")
}

// TestKeyRemovalRealClock runs removal on the real clock with small
// intervals, as a deployment with short intervals would.
func TestKeyRemovalRealClock(t *testing.T) {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	cfg := auth.DefaultConfig()
	cfg.Issuer, cfg.Audience = iss.URL(), iss.Audience()
	cfg.JWKSRefetchInterval, cfg.JWKSMaxAge = 20*time.Millisecond, 50*time.Millisecond
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	old := iss.MustMint(iss.Claims("alice"))
	if _, err := a.Verify(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Rotate("key-2"); err != nil {
		t.Fatal(err)
	}
	iss.Unpublish("key-1")
	eventually(t, "the new key accepted", func() bool {
		_, err := a.Verify(ctx(t), iss.MustMint(iss.Claims("alice")))
		return err == nil
	})
	eventually(t, "the removed key's token rejected", func() bool {
		_, err := a.Verify(ctx(t), old)
		return err != nil
	})
}

// TestRandomKidBurst: 100 concurrent tokens with random kids cost at most
// one fetch per refetch interval, and the first fetch is shared.
func TestRandomKidBurst(t *testing.T) {
	e := setup(t, nil)
	burst := func() {
		toks := make([]string, 100)
		for i := range toks {
			toks[i] = e.iss.MustMint(good(e), oidc.WithHeader("kid", fmt.Sprintf("random-%x", rand.Uint64())))
		}
		var wg sync.WaitGroup
		errs := make([]error, len(toks))
		for i, tok := range toks {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = e.a.Verify(ctx(t), tok) }()
		}
		wg.Wait()
		for _, err := range errs {
			wantUnauthenticated(t, err)
		}
	}
	burst()
	if n := e.iss.JWKSFetches(); n > 2 {
		t.Fatalf("first burst of 100 random kids: %d JWKS fetches, want at most 2", n)
	}
	first := e.iss.JWKSFetches()
	burst()
	if n := e.iss.JWKSFetches(); n != first {
		t.Fatalf("second burst within the interval: %d JWKS fetches, want still %d", n, first)
	}
	e.clock.Advance(auth.DefaultJWKSRefetchInterval)
	burst()
	if n := e.iss.JWKSFetches(); n > first+1 {
		t.Fatalf("burst after the interval: %d JWKS fetches, want at most %d", n, first+1)
	}
	t.Logf("3 bursts of 100 random kids: %d JWKS fetches, %d discovery", e.iss.JWKSFetches(), e.iss.DiscoveryFetches())
}

func TestIssuerFailures(t *testing.T) {
	t.Run("JWKS 500 before any key: Unavailable, retried after the interval", func(t *testing.T) {
		e := setup(t, nil)
		e.iss.FailJWKS(oidc.Status500)
		tok := e.iss.MustMint(good(e))
		_, err := e.a.Verify(ctx(t), tok)
		wantCode(t, err, codes.Unavailable)
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
		_, err = e.a.Verify(ctx(t), tok)
		wantCode(t, err, codes.Unavailable)
		if n := e.iss.JWKSFetches(); n != 1 {
			t.Fatalf("JWKS fetches = %d, want 1 (failures are retried no sooner than the interval)", n)
		}
		e.iss.FailJWKS(oidc.Serve)
		e.clock.Advance(auth.DefaultJWKSRefetchInterval)
		mustVerify(t, e, tok, "after the issuer recovered")
	})
	t.Run("JWKS 500 later: the keys fetched before are kept", func(t *testing.T) {
		e := setup(t, nil)
		tok := e.iss.MustMint(good(e))
		mustVerify(t, e, tok, "first")
		e.iss.FailJWKS(oidc.Status500)
		e.clock.Advance(auth.DefaultJWKSMaxAge + time.Second)
		mustVerify(t, e, tok, "while the JWKS fails")
		if err := e.iss.WaitJWKSFetches(ctx(t), 2); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the failed refresh recorded", func() bool { return e.a.Stats().JWKSFailures == 1 })
		mustVerify(t, e, e.iss.MustMint(e.iss.Claims("bob")), "a new token while the JWKS fails")
	})
	t.Run("discovery 500: Unavailable", func(t *testing.T) {
		e := setup(t, nil)
		e.iss.FailDiscovery(oidc.Status500)
		_, err := e.a.Verify(ctx(t), e.iss.MustMint(good(e)))
		wantCode(t, err, codes.Unavailable)
		if e.iss.JWKSFetches() != 0 {
			t.Fatal("the JWKS was fetched without discovery")
		}
	})
	t.Run("discovery naming another issuer: Unavailable", func(t *testing.T) {
		e := setup(t, nil)
		e.iss.SetDiscovery(map[string]any{"issuer": "https://other.example", "jwks_uri": e.iss.JWKSURL()})
		_, err := e.a.Verify(ctx(t), e.iss.MustMint(good(e)))
		wantCode(t, err, codes.Unavailable)
		if e.iss.JWKSFetches() != 0 {
			t.Fatal("the JWKS of a mismatched discovery document was fetched")
		}
	})
	t.Run("discovery with a non-loopback http jwks_uri: Unavailable", func(t *testing.T) {
		e := setup(t, nil)
		e.iss.SetDiscovery(map[string]any{"issuer": e.iss.URL(), "jwks_uri": "http://keys.example/jwks"})
		_, err := e.a.Verify(ctx(t), e.iss.MustMint(good(e)))
		wantCode(t, err, codes.Unavailable)
	})
	t.Run("JWKS hangs: bounded by http_timeout", func(t *testing.T) {
		e := setup(t, func(c *auth.Config) { c.HTTPTimeout = 200 * time.Millisecond })
		e.iss.FailJWKS(oidc.Hang)
		start := time.Now()
		_, err := e.a.Verify(ctx(t), e.iss.MustMint(good(e)))
		wantCode(t, err, codes.Unavailable)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("Verify took %v with a 200ms http_timeout", d)
		}
	})
	t.Run("JWKS hangs: bounded by the caller's deadline", func(t *testing.T) {
		e := setup(t, func(c *auth.Config) { c.HTTPTimeout = 30 * time.Second })
		e.iss.FailJWKS(oidc.Hang)
		c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.a.Verify(c, e.iss.MustMint(good(e)))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("Verify took %v with a 100ms deadline", d)
		}
	})
	t.Run("Refresh reports the failure", func(t *testing.T) {
		e := setup(t, nil)
		e.iss.FailJWKS(oidc.Status500)
		if err := e.a.Refresh(ctx(t)); err == nil {
			t.Fatal("Refresh: nil error with a failing JWKS")
		}
		e.iss.FailJWKS(oidc.Serve)
		if err := e.a.Refresh(ctx(t)); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	})
}

func TestConfiguredJWKSURISkipsDiscovery(t *testing.T) {
	e := setup(t, func(c *auth.Config) { c.JWKSURI = c.Issuer + "/jwks" })
	mustVerify(t, e, e.iss.MustMint(good(e)), "with jwks_uri configured")
	if n := e.iss.DiscoveryFetches(); n != 0 {
		t.Fatalf("discovery fetched %d times with jwks_uri configured", n)
	}
}

func TestTokenCache(t *testing.T) {
	e := setup(t, nil)
	tok := e.iss.MustMint(good(e))
	for range 3 {
		mustVerify(t, e, tok, "cached token")
	}
	if s := e.a.Stats(); s.CacheHits != 2 || s.CacheMisses != 1 {
		t.Fatalf("stats %+v, want 2 hits and 1 miss", s)
	}
	// At exp the cache lets go; full verification still accepts inside the
	// skew window, and rejects after it.
	e.clock.Advance(time.Hour)
	mustVerify(t, e, tok, "at exp, inside skew")
	if s := e.a.Stats(); s.CacheMisses != 2 {
		t.Fatalf("stats %+v: an expired cache entry answered", s)
	}
	e.clock.Advance(auth.DefaultClockSkew)
	_, err := e.a.Verify(ctx(t), tok)
	wantUnauthenticated(t, err)

	off := setup(t, func(c *auth.Config) { c.CacheSize = 0 })
	tok = off.iss.MustMint(good(off))
	for range 3 {
		mustVerify(t, off, tok, "uncached")
	}
	if s := off.a.Stats(); s.CacheHits != 0 || s.CacheMisses != 3 {
		t.Fatalf("cache_size 0: stats %+v, want 0 hits", s)
	}
}

// TestConcurrentVerifyDuringRotation is for the race detector.
func TestConcurrentVerifyDuringRotation(t *testing.T) {
	e := setup(t, func(c *auth.Config) { c.JWKSRefetchInterval, c.JWKSMaxAge = time.Nanosecond, time.Nanosecond })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = e.a.Verify(ctx(t), e.iss.MustMint(e.iss.Claims(fmt.Sprintf("u%d-%d", g, i%3))))
				e.clock.Advance(time.Millisecond)
			}
		}()
	}
	for i := range 3 {
		if _, err := e.iss.Rotate(fmt.Sprintf("key-r%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	mustVerify(t, e, e.iss.MustMint(good(e)), "after the rotations")
}
