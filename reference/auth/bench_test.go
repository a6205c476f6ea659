package auth_test

import (
	"context"
	"testing"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
)

// benchVerify verifies one token b.N times; the first verification (and
// the JWKS fetch) happens before the timer starts.
func benchVerify(b *testing.B, cacheSize int, alg string, parallel bool) {
	e := setup(b, func(c *auth.Config) {
		c.CacheSize = cacheSize
		c.Algorithms = []string{alg}
	})
	var opts []oidc.MintOption
	if alg != "RS256" {
		k, err := oidc.NewKey(alg, "bench-"+alg)
		if err != nil {
			b.Fatal(err)
		}
		e.iss.Publish(k)
		opts = append(opts, oidc.WithKey(k))
	}
	tok := e.iss.MustMint(e.iss.Claims("alice", "prism:orders:read"), opts...)
	c := context.Background()
	if _, err := e.a.Authorize(c, tok, "orders", auth.Read); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.a.Authorize(c, tok, "orders", auth.Read); err != nil {
					b.Fatal(err)
				}
			}
		})
		return
	}
	for b.Loop() {
		if _, err := e.a.Authorize(c, tok, "orders", auth.Read); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is the cost of a call whose token was verified
// before: a SHA-256 of the token and an LRU lookup.
func BenchmarkVerifyCached(b *testing.B) {
	b.Run("RS256", func(b *testing.B) { benchVerify(b, auth.DefaultCacheSize, "RS256", false) })
	b.Run("RS256/parallel", func(b *testing.B) { benchVerify(b, auth.DefaultCacheSize, "RS256", true) })
}

// BenchmarkVerifyUncached is the cost of a cache miss: header checks,
// signature verification and claim validation.
func BenchmarkVerifyUncached(b *testing.B) {
	b.Run("RS256", func(b *testing.B) { benchVerify(b, 0, "RS256", false) })
	b.Run("ES256", func(b *testing.B) { benchVerify(b, 0, "ES256", false) })
}
