package auth

import (
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/suites/fixture"
)

// nearMiss is a token that almost passes one check, and its twin that just
// passes it: the spec shows the twin accepted, then the near miss refused
// with code (Unauthenticated with the generic message, or PermissionDenied
// naming the namespace).
type nearMiss struct {
	refused, accepted token
	code              codes.Code
}

// claimPair is a near miss and its twin that differ only in the claims f
// changes (on good claims granting read and write on the namespace).
func claimPair(refused, accepted func(s *session, c oidc.Claims)) nearMiss {
	return nearMiss{refused: withClaims(refused), accepted: withClaims(accepted), code: codes.Unauthenticated}
}

// setClaim returns a claims change that sets name to the value v returns.
func setClaim(name string, v func(s *session) any) func(s *session, c oidc.Claims) {
	return func(s *session, c oidc.Claims) { c.With(name, v(s)) }
}

// grantPair is a near miss and its twin whose scope claims are the values
// the functions return (with no other grant): the near miss is
// PermissionDenied for a read of the namespace under test, the twin may read.
func grantPair(refused, accepted func(ns string) []string) nearMiss {
	scope := func(f func(string) []string) token {
		return func(s *session) string { return s.mint(s.iss.Claims("prism-auth-suite", f(s.a.Namespace)...)) }
	}
	return nearMiss{refused: scope(refused), accepted: scope(accepted), code: codes.PermissionDenied}
}

// boundary returns the whole second now falls in, and the margin a token
// must have on the side of a time check where it passes: a time claim is a
// whole second, so a token "d before the edge" is valid for between d-1s
// and d when the call arrives. The margin is 2s, plus four times the
// latency of a read with a good token measured now, so a loaded machine
// never turns a passing twin into a refusal.
func (s *session) boundary() (time.Time, time.Duration) {
	GinkgoHelper()
	start := time.Now()
	Expect(s.call(s.a.Namespace, Read, bearer(s.good())).err).NotTo(HaveOccurred(), "a read with a good token (the latency probe)")
	margin := 2*time.Second + (4 * time.Since(start)).Truncate(time.Second)
	now := time.Now()
	return time.Unix(now.Unix(), 0), margin
}

// edge returns a NumericDate offset from the current whole second.
func (s *session) edge(offset func(skew, margin time.Duration) time.Duration) int64 {
	GinkgoHelper()
	sec, margin := s.boundary()
	return sec.Add(offset(s.a.ClockSkew, margin)).Unix()
}

func describeNearMisses(s func() *session) {
	Describe("Near misses", func() {
		BeforeEach(func() { s().needMinter() })
		DescribeTable("a token that almost passes is refused, beside its twin that just passes:",
			func(m nearMiss) {
				what := CurrentSpecReport().LeafNodeText
				accepted := m.accepted(s())
				Expect(s().call(s().a.Namespace, Read, bearer(accepted)).err).NotTo(HaveOccurred(),
					"%s: the twin that just passes must be accepted", what)
				refused := m.refused(s())
				if m.code == codes.Unauthenticated {
					s().expectRejected(what, bearer(refused))
					return
				}
				r := s().call(s().a.Namespace, Read, bearer(refused))
				Expect(r.err).To(fixture.HaveCodeNaming(m.code, s().a.Namespace), "%s: a read of %q", what, s().a.Namespace)
				Expect(status.Convert(r.err).Message()).NotTo(ContainSubstring(refused), "the token in the message")
			},

			// Audience: compared exactly, each value of an array alone.
			Entry("an aud with ours as its prefix (ours + \"-2\"), beside ours", jwtLabel, claimPair(
				setClaim("aud", func(s *session) any { return s.iss.Audience() + "-2" }),
				setClaim("aud", func(s *session) any { return s.iss.Audience() }))),
			Entry("an aud with ours as its suffix (\"x\" + ours), beside ours", jwtLabel, claimPair(
				setClaim("aud", func(s *session) any { return "x" + s.iss.Audience() }),
				setClaim("aud", func(s *session) any { return s.iss.Audience() }))),
			Entry("an aud string listing ours among others, space-separated, beside an array of the same", jwtLabel, claimPair(
				setClaim("aud", func(s *session) any { return "another-service " + s.iss.Audience() }),
				setClaim("aud", func(s *session) any { return []string{"another-service", s.iss.Audience()} }))),
			Entry("an aud array whose values contain ours but none is ours, beside one that holds ours", jwtLabel, claimPair(
				setClaim("aud", func(s *session) any { return []string{s.iss.Audience() + "-2", "x" + s.iss.Audience()} }),
				setClaim("aud", func(s *session) any { return []string{s.iss.Audience() + "-2", s.iss.Audience()} }))),
			Entry("an empty aud string, beside ours", jwtLabel, claimPair(
				setClaim("aud", func(*session) any { return "" }),
				setClaim("aud", func(s *session) any { return s.iss.Audience() }))),
			Entry("an empty aud array, beside an array of ours", jwtLabel, claimPair(
				setClaim("aud", func(*session) any { return []string{} }),
				setClaim("aud", func(s *session) any { return []string{s.iss.Audience()} }))),

			// Issuer: compared exactly, as a string (not as a URL).
			Entry("an iss with a path after ours, beside ours", jwtLabel, claimPair(
				setClaim("iss", func(s *session) any { return s.iss.URL() + "/realms/other" }),
				setClaim("iss", func(s *session) any { return s.iss.URL() }))),
			Entry("an iss with ours in upper case (HTTP://...), beside ours", jwtLabel, claimPair(
				setClaim("iss", func(s *session) any { return "HTTP" + s.iss.URL()[len("http"):] }),
				setClaim("iss", func(s *session) any { return s.iss.URL() }))),

			// Subject: a non-empty string.
			Entry("an empty sub, beside a one-character sub", jwtLabel, claimPair(
				setClaim("sub", func(*session) any { return "" }),
				setClaim("sub", func(*session) any { return "x" }))),
			Entry("no sub, beside a one-character sub", jwtLabel, claimPair(
				func(_ *session, c oidc.Claims) { c.With("sub", nil) },
				setClaim("sub", func(*session) any { return "x" }))),

			// Expiry: refused from exp + clock_skew on.
			Entry("exp passed by exactly the clock skew, beside exp passed by the clock skew less a margin", jwtLabel, claimPair(
				func(s *session, c oidc.Claims) {
					c.With("iat", unix(time.Now().Add(-time.Hour))).With("nbf", unix(time.Now().Add(-time.Hour))).
						With("exp", s.edge(func(skew, _ time.Duration) time.Duration { return -skew }))
				},
				func(s *session, c oidc.Claims) {
					c.With("iat", unix(time.Now().Add(-time.Hour))).With("nbf", unix(time.Now().Add(-time.Hour))).
						With("exp", s.edge(func(skew, margin time.Duration) time.Duration { return -skew + margin }))
				})),
			Entry("exp as a string of digits, beside the same exp as a number", jwtLabel, claimPair(
				setClaim("exp", func(*session) any { return strconv.FormatInt(unix(time.Now().Add(time.Hour)), 10) }),
				setClaim("exp", func(*session) any { return unix(time.Now().Add(time.Hour)) }))),

			// Not before: refused while nbf - clock_skew is ahead.
			Entry("nbf ahead by the clock skew and a margin, beside nbf ahead by exactly the clock skew", jwtLabel, claimPair(
				func(s *session, c oidc.Claims) {
					c.With("iat", nil).With("nbf", s.edge(func(skew, margin time.Duration) time.Duration { return skew + margin }))
				},
				func(s *session, c oidc.Claims) {
					c.With("iat", nil).With("nbf", s.edge(func(skew, _ time.Duration) time.Duration { return skew }))
				})),
			Entry("nbf as a string of digits, beside the same nbf as a number", jwtLabel, claimPair(
				setClaim("nbf", func(*session) any { return strconv.FormatInt(unix(time.Now().Add(-time.Minute)), 10) }),
				setClaim("nbf", func(*session) any { return unix(time.Now().Add(-time.Minute)) }))),

			// Issued at: refused while iat - clock_skew is ahead.
			Entry("iat ahead by the clock skew and a margin, beside iat ahead by exactly the clock skew", jwtLabel, claimPair(
				func(s *session, c oidc.Claims) {
					c.With("nbf", nil).With("iat", s.edge(func(skew, margin time.Duration) time.Duration { return skew + margin }))
				},
				func(s *session, c oidc.Claims) {
					c.With("nbf", nil).With("iat", s.edge(func(skew, _ time.Duration) time.Duration { return skew }))
				})),

			// Lifetime: exp - iat, and exp - now (plus clock_skew), at most
			// max_token_lifetime.
			Entry("exp - iat of max_token_lifetime and a second, beside exactly max_token_lifetime", jwtLabel, claimPair(
				func(s *session, c oidc.Claims) { s.lifetime(c, time.Second) },
				func(s *session, c oidc.Claims) { s.lifetime(c, 0) })),
			Entry("exp beyond now + max_token_lifetime + clock_skew by a margin (no iat), beside exactly at it", jwtLabel, claimPair(
				func(s *session, c oidc.Claims) {
					c.With("iat", nil).With("exp", s.edge(func(skew, margin time.Duration) time.Duration {
						return s.maxLifetime() + skew + margin
					}))
				},
				func(s *session, c oidc.Claims) {
					c.With("iat", nil).With("exp", s.edge(func(skew, _ time.Duration) time.Duration { return s.maxLifetime() + skew }))
				})),

			// Key id: names a key exactly.
			Entry("a kid with one character more than the issuer's, beside the issuer's", jwtLabel, nearMiss{
				refused: signed(func(s *session) []oidc.MintOption {
					return []oidc.MintOption{oidc.WithHeader("kid", s.iss.Key().KID+"0")}
				}),
				accepted: func(s *session) string { return s.good() }, code: codes.Unauthenticated}),
			Entry("a kid that is a prefix of the issuer's, beside the issuer's", jwtLabel, nearMiss{
				refused: signed(func(s *session) []oidc.MintOption {
					kid := s.iss.Key().KID
					return []oidc.MintOption{oidc.WithHeader("kid", kid[:len(kid)-1])}
				}),
				accepted: func(s *session) string { return s.good() }, code: codes.Unauthenticated}),

			// Grants: a namespace and an access compared exactly, a scope value
			// matched whole.
			Entry("a grant on a prefix of the namespace (its name less the last character), beside a grant on it", nsLabel, grantPair(
				func(ns string) []string { return grants(ns[:len(ns)-1], Read, Write) },
				func(ns string) []string { return grants(ns, Read) })),
			Entry("a grant on a word-prefix of the namespace (\"team\" for \"team-a\"), beside a grant on it", nsLabel, grantPair(
				func(ns string) []string { return grants(ns[:lastDash(ns)], Read, Write) },
				func(ns string) []string { return grants(ns, Read) })),
			Entry("a scope whose access contains read (prism:<ns>:readwrite), beside prism:<ns>:read", nsLabel, grantPair(
				func(ns string) []string { return []string{"prism:" + ns + ":readwrite"} },
				func(ns string) []string { return grants(ns, Read) })),
			Entry("a scope with the read grant and a suffix (prism:<ns>:read:all), beside prism:<ns>:read", nsLabel, grantPair(
				func(ns string) []string { return []string{"prism:" + ns + ":read:all"} },
				func(ns string) []string { return grants(ns, Read) })),
			Entry("a scope with a prefix before the read grant (xprism:<ns>:read), beside prism:<ns>:read", nsLabel, grantPair(
				func(ns string) []string { return []string{"xprism:" + ns + ":read"} },
				func(ns string) []string { return grants(ns, Read) })),
		)
	})
}

// lastDash is the index of the last '-' in ns (the auth namespaces are
// "<namespace>-auth-a"), or len(ns)-1 when it has none.
func lastDash(ns string) int {
	for i := len(ns) - 1; i > 0; i-- {
		if ns[i] == '-' {
			return i
		}
	}
	return len(ns) - 1
}

// maxLifetime returns the proxy's max_token_lifetime, and skips the spec
// when the proxy has none.
func (s *session) maxLifetime() time.Duration {
	if s.a.MaxTokenLifetime <= 0 {
		Skip("the proxy sets no max_token_lifetime, so a token's lifetime has no edge to test")
	}
	return s.a.MaxTokenLifetime
}

// lifetime sets iat an hour ago and exp max_token_lifetime + extra after it.
func (s *session) lifetime(c oidc.Claims, extra time.Duration) {
	iat := time.Now().Add(-time.Hour).Truncate(time.Second)
	c.With("iat", iat.Unix()).With("nbf", iat.Unix()).With("exp", iat.Add(s.maxLifetime()+extra).Unix())
}
