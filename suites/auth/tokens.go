package auth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/suites/fixture"
)

// token makes a token for a spec.
type token func(s *session) string

// withClaims returns good claims changed by f, signed by the issuer.
func withClaims(f func(s *session, c oidc.Claims)) token {
	return func(s *session) string {
		c := s.claims()
		f(s, c)
		return s.mint(c)
	}
}

// signed returns good claims signed with the mint options of opts.
func signed(opts func(s *session) []oidc.MintOption) token {
	return func(s *session) string { return s.mint(s.claims(), opts(s)...) }
}

// unix is a time as a NumericDate.
func unix(t time.Time) int64 { return t.Unix() }

func describeTokens(s func() *session) {
	Describe("Tokens", jwtLabel, func() {
		BeforeEach(func() { s().needMinter() })
		DescribeTable("are rejected with Unauthenticated and the generic message:",
			func(mk token) {
				s().expectRejected(CurrentSpecReport().LeafNodeText, bearer(mk(s())))
			},
			Entry("alg none", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithAlg("none"), oidc.Unsigned()}
			})),
			Entry("alg None", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHeader("alg", "None"), oidc.Unsigned()}
			})),
			Entry("alg NONE", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHeader("alg", "NONE"), oidc.Unsigned()}
			})),
			Entry("alg nOnE with a signature", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHeader("alg", "nOnE")}
			})),
			Entry("HS256 signed with the issuer's RSA public key (PEM) as the secret", signed(func(s *session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHMAC(s.iss.Key().PublicPEM())}
			})),
			Entry("HS256 signed with the issuer's RSA public key (DER) as the secret", signed(func(s *session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHMAC(s.iss.Key().PublicDER())}
			})),
			Entry("an algorithm outside the allow-list (RS384, validly signed)", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithAlg("RS384")}
			})),
			Entry("an algorithm outside the allow-list (PS256, validly signed)", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithAlg("PS256")}
			})),
			Entry("expired beyond the clock skew", withClaims(func(s *session, c oidc.Claims) {
				c.With("iat", unix(time.Now().Add(-2*time.Hour))).With("nbf", unix(time.Now().Add(-2*time.Hour))).
					With("exp", unix(time.Now().Add(-s.a.ClockSkew-time.Minute)))
			})),
			Entry("no exp", withClaims(func(_ *session, c oidc.Claims) { c.With("exp", nil) })),
			Entry("nbf beyond the clock skew", withClaims(func(s *session, c oidc.Claims) {
				c.With("nbf", unix(time.Now().Add(s.a.ClockSkew+time.Minute)))
			})),
			Entry("iat far in the future", withClaims(func(_ *session, c oidc.Claims) {
				c.With("iat", unix(time.Now().Add(time.Hour)))
			})),
			Entry("a wrong iss", withClaims(func(_ *session, c oidc.Claims) { c.With("iss", "https://idp.example.invalid") })),
			Entry("an iss with a trailing slash", withClaims(func(s *session, c oidc.Claims) { c.With("iss", s.iss.URL()+"/") })),
			Entry("a wrong aud", withClaims(func(_ *session, c oidc.Claims) { c.With("aud", "another-service") })),
			Entry("an aud array without ours", withClaims(func(_ *session, c oidc.Claims) {
				c.With("aud", []string{"another-service", "a-third-one"})
			})),
			Entry("no aud", withClaims(func(_ *session, c oidc.Claims) { c.With("aud", nil) })),
			Entry("an unknown kid", signed(func(s *session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHeader("kid", "unknown-"+strings.TrimSuffix(s.prefix, ":"))}
			})),
			Entry("no kid", signed(func(*session) []oidc.MintOption { return []oidc.MintOption{oidc.WithoutHeader("kid")} })),
			Entry("an empty kid", signed(func(*session) []oidc.MintOption { return []oidc.MintOption{oidc.WithHeader("kid", "")} })),
			Entry("a kid that is not a string", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHeader("kid", 1)}
			})),
			kidInjection("a path traversal", "../../../../dev/null"),
			kidInjection("SQL", "' OR '1'='1' --"),
			kidInjection("a NUL byte after the real kid", "\x00"),
			kidInjection("a space after the real kid", " "),
			kidInjection("a wildcard", "*"),
			kidInjection("a template expression", "${jndi:ldap://127.0.0.1:1/a}"),
			kidInjection("the real kid upper-cased", "UPPER"),
			keyHeader("jku", "the attacker's kid", false),
			keyHeader("jku", "the issuer's kid", true),
			keyHeader("x5u", "the attacker's kid", false),
			keyHeader("x5u", "the issuer's kid", true),
			keyHeader("jwk", "the attacker's kid", false),
			keyHeader("jwk", "the issuer's kid", true),
			keyHeader("x5c", "the attacker's kid", false),
			keyHeader("x5c", "the issuer's kid", true),
			Entry("a tampered payload (a grant added after signing)", func(s *session) string {
				t, err := oidc.TamperPayload(s.mint(s.iss.Claims("prism-auth-suite")), func(c oidc.Claims) {
					c.With("scope", strings.Join(grants(s.a.Namespace, Read, Write), " "))
				})
				Expect(err).NotTo(HaveOccurred())
				return t
			}),
			Entry("a stripped signature", func(s *session) string { return oidc.StripSignature(s.good()) }),
			Entry("no signature segment at all", func(s *session) string {
				return strings.TrimSuffix(oidc.StripSignature(s.good()), ".")
			}),
			Entry("a signature of another token", func(s *session) string {
				a, b := s.good(), s.mint(s.claims().With("sub", "someone-else"))
				return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
			}),
			Entry("another key with the issuer's kid", signed(func(s *session) []oidc.MintOption {
				_, same := s.attackerKeys()
				return []oidc.MintOption{oidc.WithKey(same)}
			})),
			Entry("a crit header", signed(func(*session) []oidc.MintOption {
				return []oidc.MintOption{oidc.WithHeader("crit", []string{"exp"}), oidc.WithHeader("exp", 1)}
			})),
			Entry("a duplicate alg in the header", signed(func(s *session) []oidc.MintOption {
				raw := fmt.Sprintf(`{"alg":"RS256","kid":%q,"alg":"none"}`, s.iss.Key().KID)
				return []oidc.MintOption{oidc.WithRawHeader([]byte(raw))}
			})),
			Entry("an oversized token (validly signed)", func(s *session) string {
				return s.mint(s.claims().Pad(s.a.MaxTokenBytes))
			}),
			Entry("garbage", func(*session) string { return "not-a-jwt" }),
			Entry("a JSON header that is not base64url", func(*session) string {
				return `{"alg":"none"}.` + base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + "."
			}),
		)

		It("rejects a call without authorization metadata with Unauthenticated", func() {
			r := s().call(s().a.Namespace, Read)
			Expect(r.err).To(fixture.HaveCode(codes.Unauthenticated))
		})
		It("rejects authorization metadata sent twice, even with good tokens, with Unauthenticated", func() {
			t := s().good()
			s().expectRejected("two authorization values", bearer(t), bearer(t))
		})
		DescribeTable("rejects another scheme than Bearer with Unauthenticated:",
			func(value func(tok string) string) {
				s().expectRejected(CurrentSpecReport().LeafNodeText, value(s().good()))
			},
			Entry("Basic", func(t string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+t)) }),
			Entry("Token", func(t string) string { return "Token " + t }),
			Entry("the bare token", func(t string) string { return t }),
			Entry("Bearer without a token", func(string) string { return "Bearer" }),
			Entry("Bearer with an empty token", func(string) string { return "Bearer " }),
		)

		DescribeTable("accepts",
			func(mk token) { s().expectAccepted(CurrentSpecReport().LeafNodeText, bearer(mk(s()))) },
			Entry("a good token", func(s *session) string { return s.good() }),
			Entry("an aud array containing ours", withClaims(func(s *session, c oidc.Claims) {
				c.With("aud", []string{"another-service", s.iss.Audience()})
			})),
			Entry("exp passed by less than the clock skew", withClaims(func(s *session, c oidc.Claims) {
				c.With("iat", unix(time.Now().Add(-time.Hour))).With("nbf", unix(time.Now().Add(-time.Hour))).
					With("exp", unix(time.Now().Add(-s.a.ClockSkew/2)))
			})),
			Entry("nbf in the future by less than the clock skew", withClaims(func(s *session, c oidc.Claims) {
				c.With("nbf", unix(time.Now().Add(s.a.ClockSkew/2)))
			})),
			Entry("iat in the future by less than the clock skew", withClaims(func(s *session, c oidc.Claims) {
				c.With("iat", unix(time.Now().Add(s.a.ClockSkew/2)))
			})),
		)
		It("accepts the scheme in any letter case (bearer)", func() {
			s().expectAccepted("lower-case scheme", "bearer "+s().good())
		})
	})
}

// kidInjection is a token signed by the issuer's key whose kid is the real
// one with suffix (or, for "UPPER", upper-cased), or inject when it does not
// start with a control character or space.
func kidInjection(what, inject string) TableEntry {
	return Entry("a kid injection: "+what, signed(func(s *session) []oidc.MintOption {
		kid := inject
		switch inject {
		case "\x00", " ":
			kid = s.iss.Key().KID + inject
		case "UPPER":
			kid = strings.ToUpper(s.iss.Key().KID)
		}
		return []oidc.MintOption{oidc.WithHeader("kid", kid)}
	}))
}

// keyHeader is a token signed by an attacker's key whose header carries the
// attacker's key (jwk, x5c) or a URL to it (jku, x5u, on a loopback port
// nothing serves: the proxy must never fetch it), with the attacker's kid or
// the issuer's.
func keyHeader(header, kidText string, issuerKID bool) TableEntry {
	return Entry(fmt.Sprintf("%s pointing at an attacker's key, with %s", header, kidText), signed(func(s *session) []oidc.MintOption {
		att, _ := s.attackerKeys()
		kid := att.KID
		if issuerKID {
			kid = s.iss.Key().KID
		}
		k := att.WithKID(kid)
		var v any
		switch header {
		case "jku", "x5u":
			v = "http://127.0.0.1:1/attacker-keys"
		case "jwk":
			v = k.PublicJWK()
		case "x5c":
			der, err := k.CertificateDER()
			Expect(err).NotTo(HaveOccurred())
			v = []string{base64.StdEncoding.EncodeToString(der)}
		}
		return []oidc.MintOption{oidc.WithKey(k), oidc.WithHeader(header, v)}
	}))
}

func describeKeys(s func() *session) {
	Describe("Issuer keys", jwtLabel, func() {
		BeforeEach(func() { s().needMinter() })
		// newKey makes a key, publishes it and unpublishes it at cleanup.
		newKey := func(kid string) *oidc.Key {
			GinkgoHelper()
			k, err := oidc.NewKey("RS256", kid)
			fixture.Harness(err, "make issuer key %q", kid)
			s().iss.Publish(k)
			DeferCleanup(func() { s().iss.Unpublish(k.KID) })
			return k
		}
		eventually := func() time.Duration { return s().a.RefetchInterval + s().a.MaxAge + s().fx.Timeouts.Eventually }

		It("accepts a token signed by a key the issuer published after the proxy fetched its keys", func() {
			k := newKey("rotated-" + strings.Trim(s().prefix, ":"))
			tok := s().mint(s().claims(), oidc.WithKey(k))
			Eventually(func() error { return s().call(s().a.Namespace, Read, bearer(tok)).err }).
				WithTimeout(eventually()).WithPolling(50*time.Millisecond).Should(Succeed(),
				"a token of a newly published key (the proxy refetches the JWKS on an unknown kid, at most once per jwks_refetch_interval %v)", s().a.RefetchInterval)
		})

		It("rejects the tokens of a key the issuer removed, cached ones included, within jwks_max_age", func() {
			k := newKey("removed-" + strings.Trim(s().prefix, ":"))
			tok := s().mint(s().claims(), oidc.WithKey(k))
			Eventually(func() error { return s().call(s().a.Namespace, Read, bearer(tok)).err }).
				WithTimeout(eventually()).WithPolling(50*time.Millisecond).Should(Succeed(), "the key's token before removal")
			s().iss.Unpublish(k.KID)
			Eventually(func() codes.Code { return status.Code(s().call(s().a.Namespace, Read, bearer(tok)).err) }).
				WithTimeout(eventually()).WithPolling(50*time.Millisecond).Should(Equal(codes.Unauthenticated),
				"the token of a removed key (jwks_max_age %v)", s().a.MaxAge)
		})

		It("fetches the JWKS a bounded number of times for a burst of tokens with random kids", func() {
			const tokens, workers = 200, 20
			toks := make([]string, tokens)
			for i := range toks {
				toks[i] = s().mint(s().claims(), oidc.WithHeader("kid", fmt.Sprintf("random-%s-%d", strings.Trim(s().prefix, ":"), i)))
			}
			before := s().iss.JWKSFetches()
			start := time.Now()
			var wg sync.WaitGroup
			codesSeen := make([]codes.Code, tokens)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer GinkgoRecover()
					for i := w; i < tokens; i += workers {
						codesSeen[i] = status.Code(s().call(s().a.Namespace, Read, bearer(toks[i])).err)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			fetches := s().iss.JWKSFetches() - before
			for i, c := range codesSeen {
				Expect(c).To(Equal(codes.Unauthenticated), "token %d with a random kid", i)
			}
			// One refetch per jwks_refetch_interval, plus one background
			// refresh per jwks_max_age, plus one for a period in progress.
			bound := 2 + int(elapsed/s().a.RefetchInterval) + int(elapsed/s().a.MaxAge)
			Expect(fetches).To(BeNumerically("<=", bound),
				"%d tokens with random kids in %v caused %d JWKS fetches; want at most %d (jwks_refetch_interval %v)",
				tokens, elapsed.Round(time.Millisecond), fetches, bound, s().a.RefetchInterval)
		})
	})
}
