package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
)

// hmacSecret is the shared secret of configs that allow HS256.
var hmacSecret = []byte("0123456789abcdef0123456789abcdef-prism-test")

func allowHS256(c *auth.Config) {
	c.Algorithms = append(c.Algorithms, "HS256")
	c.HMAC = &auth.HMACConfig{KeyID: "shared-1", Secret: hmacSecret}
}

// tokenCase is one token and what Verify must say about it.
type tokenCase struct {
	name string
	cfg  func(*auth.Config)
	// mint makes the token; atk is an attacker's issuer with its own key.
	mint func(t *testing.T, e *env, atk *oidc.Issuer) string
	// reason is a substring of the rejection reason ("" = accepted).
	reason string
}

func mustKey(t *testing.T, alg, kid string) *oidc.Key {
	t.Helper()
	k, err := oidc.NewKey(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func good(e *env) oidc.Claims { return e.iss.Claims("alice", "prism:orders:read") }

func at(e *env, d time.Duration) int64 { return e.clock.Now().Add(d).Unix() }

// TestVerifyTokens runs every acceptance and rejection case of issue 8
// (item 4, first bullet) against the test issuer. Rejections must be
// Unauthenticated with the generic message, and for the reason named.
func TestVerifyTokens(t *testing.T) {
	const skew = auth.DefaultClockSkew
	var cases []tokenCase
	for _, none := range []string{"none", "None", "NONE", "nOnE"} {
		cases = append(cases, tokenCase{name: "alg " + none + " unsigned",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("alg", none), oidc.Unsigned())
			}, reason: "unsigned tokens are never accepted"})
	}
	cases = append(cases,
		tokenCase{name: "alg none with a real signature",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("alg", "none"))
			}, reason: "unsigned tokens are never accepted"},
		tokenCase{name: "HS256 signed with the RSA public key PEM (HS256 not allowed)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHMAC(e.iss.Key().PublicPEM()))
			}, reason: `alg "HS256" is not in the allow-list`},
		tokenCase{name: "HS256 signed with the RSA public key DER (HS256 not allowed)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHMAC(e.iss.Key().PublicDER()))
			}, reason: `alg "HS256" is not in the allow-list`},
		tokenCase{name: "HS256 signed with the RSA public key, RSA kid (HS256 allowed)", cfg: allowHS256,
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHMAC(e.iss.Key().PublicPEM()))
			}, reason: "not the configured hmac.kid"},
		tokenCase{name: "HS256 signed with the RSA public key, HMAC kid (HS256 allowed)", cfg: allowHS256,
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHMAC(e.iss.Key().PublicPEM()), oidc.WithHeader("kid", "shared-1"))
			}, reason: "signature"},
		tokenCase{name: "RS512 outside the allow-list",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				k := mustKey(t, "RS512", "key-rs512")
				e.iss.Publish(k)
				return e.iss.MustMint(good(e), oidc.WithKey(k))
			}, reason: `alg "RS512" is not in the allow-list`},
		tokenCase{name: "PS256 outside the allow-list",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithAlg("PS256"))
			}, reason: `alg "PS256" is not in the allow-list`},
		tokenCase{name: "ES384 outside the allow-list",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				k := mustKey(t, "ES384", "key-es384")
				e.iss.Publish(k)
				return e.iss.MustMint(good(e), oidc.WithKey(k))
			}, reason: `alg "ES384" is not in the allow-list`},
		tokenCase{name: "PS256 with an RS256 key (both allowed, the JWK's alg is RS256)",
			cfg: func(c *auth.Config) { c.Algorithms = []string{"RS256", "PS256"} },
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithAlg("PS256"))
			}, reason: "names no key usable with PS256"},
		tokenCase{name: "ES256 header over an RSA kid",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithKey(mustKey(t, "ES256", "key-1")))
			}, reason: "names no key usable with ES256"},
		tokenCase{name: "expired beyond skew",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iat", at(e, -2*time.Hour)).With("nbf", nil).With("exp", at(e, -skew-time.Second)))
			}, reason: `"exp" not satisfied`},
		tokenCase{name: "expired exactly at the skew edge",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iat", at(e, -2*time.Hour)).With("nbf", nil).With("exp", at(e, -skew)))
			}, reason: `"exp" not satisfied`},
		tokenCase{name: "missing exp",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("exp", nil))
			}, reason: "no exp claim"},
		tokenCase{name: "nbf beyond skew",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iat", nil).With("nbf", at(e, skew+time.Second)))
			}, reason: `"nbf" not satisfied`},
		tokenCase{name: "iat beyond skew",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("nbf", nil).With("iat", at(e, skew+time.Second)))
			}, reason: "iat"},
		tokenCase{name: "iat far in the future",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("nbf", nil).With("iat", at(e, 365*24*time.Hour)).With("exp", at(e, 366*24*time.Hour)))
			}, reason: "iat"},
		tokenCase{name: "wrong iss",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iss", "https://evil.example"))
			}, reason: `"iss" not satisfied`},
		tokenCase{name: "iss with a trailing slash",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iss", e.iss.URL()+"/"))
			}, reason: `"iss" not satisfied`},
		tokenCase{name: "missing iss",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iss", nil))
			}, reason: `iss`},
		tokenCase{name: "wrong aud",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("aud", "someone-else"))
			}, reason: `"aud" not satisfied`},
		tokenCase{name: "aud array without ours",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("aud", []string{"a", "b"}))
			}, reason: `"aud" not satisfied`},
		tokenCase{name: "missing aud",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("aud", nil))
			}, reason: `aud`},
		tokenCase{name: "unknown kid",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("kid", "key-999"))
			}, reason: "unknown kid"},
		tokenCase{name: "no kid",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithoutHeader("kid"))
			}, reason: "kid is missing"},
		tokenCase{name: "empty kid",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("kid", ""))
			}, reason: "kid is missing"},
		tokenCase{name: "kid not a string",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("kid", 1))
			}, reason: "kid is missing"},
	)
	for _, kid := range []string{"../../etc/passwd", "' OR 1=1", "' OR '1'='1' --", "key-1\x00", "key-1 ", "KEY-1",
		"$(id)", "http://127.0.0.1:1/jwks", "key-1/../key-1", strings.Repeat("k", 4000)} {
		cases = append(cases, tokenCase{name: "kid injection " + kid[:min(len(kid), 20)],
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("kid", kid))
			}, reason: "unknown kid"})
	}
	for _, h := range []string{"jku", "x5u"} {
		cases = append(cases,
			tokenCase{name: h + " at an attacker JWKS, attacker kid",
				mint: func(t *testing.T, e *env, atk *oidc.Issuer) string {
					return atk.MustMint(good(e), oidc.WithHeader(h, atk.JWKSURL()))
				}, reason: "unknown kid"},
			tokenCase{name: h + " at an attacker JWKS, our kid",
				mint: func(t *testing.T, e *env, atk *oidc.Issuer) string {
					return atk.MustMint(good(e), oidc.WithHeader(h, atk.JWKSURL()), oidc.WithHeader("kid", "key-1"))
				}, reason: "signature"},
		)
	}
	cases = append(cases,
		tokenCase{name: "jwk header embedding the attacker key",
			mint: func(t *testing.T, e *env, atk *oidc.Issuer) string {
				return atk.MustMint(good(e), oidc.WithHeader("jwk", atk.Key().PublicJWK()), oidc.WithHeader("kid", "key-1"))
			}, reason: "signature"},
		tokenCase{name: "jwk header embedding the attacker key, attacker kid",
			mint: func(t *testing.T, e *env, atk *oidc.Issuer) string {
				return atk.MustMint(good(e), oidc.WithHeader("jwk", atk.Key().PublicJWK()))
			}, reason: "unknown kid"},
		tokenCase{name: "x5c header with the attacker's certificate",
			mint: func(t *testing.T, e *env, atk *oidc.Issuer) string {
				der, err := atk.Key().CertificateDER()
				if err != nil {
					t.Fatal(err)
				}
				return atk.MustMint(good(e), oidc.WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(der)}),
					oidc.WithHeader("kid", "key-1"))
			}, reason: "signature"},
		tokenCase{name: "tampered payload (scope raised)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				tok, err := oidc.TamperPayload(e.iss.MustMint(good(e)), func(c oidc.Claims) { c["scope"] = "prism:orders:write" })
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}, reason: "signature"},
		tokenCase{name: "tampered payload (exp extended)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				tok, err := oidc.TamperPayload(e.iss.MustMint(good(e)), func(c oidc.Claims) { c["exp"] = at(e, 100*time.Hour) })
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}, reason: "signature"},
		tokenCase{name: "stripped signature",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return oidc.StripSignature(e.iss.MustMint(good(e)))
			}, reason: "no signature"},
		tokenCase{name: "signature of another token",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				a := strings.Split(e.iss.MustMint(good(e)), ".")
				b := strings.Split(e.iss.MustMint(e.iss.Claims("bob")), ".")
				return a[0] + "." + a[1] + "." + b[2]
			}, reason: "signature"},
		tokenCase{name: "another key with the same kid",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithKey(mustKey(t, "RS256", "key-1")))
			}, reason: "signature"},
		tokenCase{name: "crit naming an extension",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{"x-prism"}), oidc.WithHeader("x-prism", 1))
			}, reason: "crit"},
		tokenCase{name: "crit naming a registered claim",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{"exp"}))
			}, reason: "crit"},
		tokenCase{name: "crit empty",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{}))
			}, reason: "crit"},
		tokenCase{name: "crit b64 with b64 false",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{"b64"}), oidc.WithHeader("b64", false))
			}, reason: "crit"},
		tokenCase{name: "b64 without crit",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("b64", true))
			}, reason: "b64"},
		tokenCase{name: "oversized token (9 KiB)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).Pad(9 << 10))
			}, reason: "over max_token_bytes"},
		tokenCase{name: "oversized garbage (1 MiB)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return strings.Repeat("A", 1<<20)
			}, reason: "over max_token_bytes"},
		tokenCase{name: "duplicate alg in the header",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithRawHeader([]byte(`{"alg":"RS256","kid":"key-1","alg":"none"}`)))
			}, reason: "appears twice"},
		tokenCase{name: "header not JSON",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithRawHeader([]byte(`alg=RS256`)))
			}, reason: "header"},
		tokenCase{name: "two segments",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				p := strings.Split(e.iss.MustMint(good(e)), ".")
				return p[0] + "." + p[1]
			}, reason: "2 segments"},
		tokenCase{name: "five segments (JWE shape)",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e)) + ".x.y"
			}, reason: "5 segments"},
		tokenCase{name: "JSON serialization",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				p := strings.Split(e.iss.MustMint(good(e)), ".")
				return `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`
			}, reason: "segments"},
		tokenCase{name: "weak RSA key (1024 bits) in the JWKS",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				k, err := oidc.NewRSAKey(1024, "RS256", "weak")
				if err != nil {
					t.Fatal(err)
				}
				e.iss.Publish(k)
				return e.iss.MustMint(good(e), oidc.WithKey(k))
			}, reason: "unknown kid"},
		tokenCase{name: "HS256 over a symmetric key published in the JWKS", cfg: allowHS256,
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				secret := []byte("a-symmetric-key-nobody-should-publish!!")
				e.iss.ServeRawJWKS([]byte(`{"keys":[{"kty":"oct","kid":"oct-1","k":"` +
					base64.RawURLEncoding.EncodeToString(secret) + `"}]}`))
				return e.iss.MustMint(good(e), oidc.WithHMAC(secret), oidc.WithHeader("kid", "oct-1"))
			}, reason: "not the configured hmac.kid"},

		// Accepted.
		tokenCase{name: "good RS256 token",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string { return e.iss.MustMint(good(e)) }},
		tokenCase{name: "aud array containing ours",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("aud", []string{"another-service", e.iss.Audience()}))
			}},
		tokenCase{name: "exp passed, inside the skew window",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iat", at(e, -time.Hour)).With("nbf", nil).With("exp", at(e, -skew+time.Second)))
			}},
		tokenCase{name: "nbf in the future, at the skew edge",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iat", nil).With("nbf", at(e, skew)))
			}},
		tokenCase{name: "iat in the future, at the skew edge",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("nbf", nil).With("iat", at(e, skew)))
			}},
		tokenCase{name: "no iat, no nbf",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e).With("iat", nil).With("nbf", nil))
			}},
		tokenCase{name: "jku at an attacker JWKS on a good token is ignored",
			mint: func(t *testing.T, e *env, atk *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHeader("jku", atk.JWKSURL()), oidc.WithHeader("x5u", atk.JWKSURL()))
			}},
		tokenCase{name: "ES256 key",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				k := mustKey(t, "ES256", "key-es256")
				e.iss.Publish(k)
				return e.iss.MustMint(good(e), oidc.WithKey(k))
			}},
		tokenCase{name: "EdDSA key when allowed", cfg: func(c *auth.Config) { c.Algorithms = []string{"EdDSA"} },
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				k := mustKey(t, "EdDSA", "key-ed")
				e.iss.Publish(k)
				return e.iss.MustMint(good(e), oidc.WithKey(k))
			}},
		tokenCase{name: "HS256 with the configured secret", cfg: allowHS256,
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				return e.iss.MustMint(good(e), oidc.WithHMAC(hmacSecret), oidc.WithHeader("kid", "shared-1"))
			}},
		tokenCase{name: "token just under max_token_bytes",
			mint: func(t *testing.T, e *env, _ *oidc.Issuer) string {
				base := len(e.iss.MustMint(good(e).Pad(0)))
				tok := ""
				for n := (auth.DefaultMaxTokenBytes - base) * 3 / 4; n > 0; n-- {
					if tok = e.iss.MustMint(good(e).Pad(n)); len(tok) <= auth.DefaultMaxTokenBytes {
						break
					}
				}
				if len(tok) < auth.DefaultMaxTokenBytes-4 {
					t.Fatalf("padding reached %d bytes only", len(tok))
				}
				return tok
			}},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, tc.cfg)
			ao := oidc.DefaultOptions()
			ao.Key = sharedKey(t, "attacker-1")
			atk, err := oidc.Start(ao)
			if err != nil {
				t.Fatal(err)
			}
			defer atk.Close()
			tok := tc.mint(t, e, atk)
			p, err := e.a.Verify(ctx(t), tok)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v (reason %s), want accepted", err, reason(err))
				}
				if p.Subject != "alice" || p.Issuer != e.iss.URL() {
					t.Fatalf("principal = %+v", p)
				}
			} else {
				if err == nil {
					t.Fatalf("Verify accepted the token, want rejected for %q", tc.reason)
				}
				got := wantUnauthenticated(t, err)
				if !strings.Contains(got.Reason, tc.reason) {
					t.Fatalf("rejected for %q, want a reason containing %q", got.Reason, tc.reason)
				}
				if strings.Contains(got.Reason, tok) || strings.Contains(err.Error(), tok) {
					t.Fatal("the error carries the token")
				}
			}
			if n := atk.JWKSFetches() + atk.DiscoveryFetches(); n != 0 {
				t.Fatalf("the attacker's issuer was asked for keys %d times; token headers must never cause a fetch", n)
			}
			if strings.Contains(e.logs.String(), tok) {
				t.Fatal("the token appears in the logs")
			}
		})
	}
}

func reason(err error) string {
	if e, ok := err.(*auth.Error); ok {
		return e.Reason
	}
	return ""
}
