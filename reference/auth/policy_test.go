package auth_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
)

// TestTokenPolicyNearMisses: tokens that are good but for one claim the
// JWT library lets through (issue 13, item 2). Each is signed correctly.
func TestTokenPolicyNearMisses(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	year10000 := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	noLimit := func(c *auth.Config) { c.MaxTokenLifetime = 0 }
	cases := []struct {
		name   string
		cfg    func(*auth.Config)
		claims func(e *env) oidc.Claims
		opts   func(e *env) []oidc.MintOption
		reason string // "" = accepted
	}{
		{name: "no sub", claims: func(e *env) oidc.Claims { return good(e).With("sub", nil) }, reason: "sub is missing or empty"},
		{name: "empty sub", claims: func(e *env) oidc.Claims { return good(e).With("sub", "") }, reason: "sub is missing or empty"},
		{name: "sub a number", claims: func(e *env) oidc.Claims { return good(e).With("sub", 42) }, reason: "sub is not a string"},
		{name: "sub null", claims: func(e *env) oidc.Claims { return good(e).With("sub", raw("null")) }, reason: "sub is not a string"},
		{name: "sub an array", claims: func(e *env) oidc.Claims { return good(e).With("sub", []string{"alice"}) }, reason: "sub is not a string"},
		{name: "no sub, allowed", cfg: func(c *auth.Config) { c.AllowMissingSubject = true },
			claims: func(e *env) oidc.Claims { return good(e).With("sub", nil) }},
		{name: "sub a number, allowed missing is still a string rule", cfg: func(c *auth.Config) { c.AllowMissingSubject = true },
			claims: func(e *env) oidc.Claims { return good(e).With("sub", 42) }, reason: "sub is not a string"},

		{name: "exp a string", claims: func(e *env) oidc.Claims {
			return good(e).With("exp", raw(`"`+itoa(at(e, time.Hour))+`"`))
		}, reason: "exp is not a JSON number"},
		{name: "nbf a string", claims: func(e *env) oidc.Claims {
			return good(e).With("nbf", raw(`"`+itoa(at(e, 0))+`"`))
		}, reason: "nbf is not a JSON number"},
		{name: "iat a string", claims: func(e *env) oidc.Claims {
			return good(e).With("iat", raw(`"`+itoa(at(e, 0))+`"`))
		}, reason: "iat is not a JSON number"},
		{name: "exp null", claims: func(e *env) oidc.Claims { return good(e).With("exp", raw("null")) }, reason: "exp is not a JSON number"},
		{name: "exp true", claims: func(e *env) oidc.Claims { return good(e).With("exp", true) }, reason: "exp is not a JSON number"},
		{name: "exp with a fraction is a number", claims: func(e *env) oidc.Claims {
			return good(e).With("exp", raw(itoa(at(e, time.Hour))+".5"))
		}},

		{name: "exp in year 10000", claims: func(e *env) oidc.Claims { return good(e).With("exp", year10000) },
			reason: "max_token_lifetime"},
		{name: "exp in year 10000 without iat", claims: func(e *env) oidc.Claims {
			return good(e).With("exp", year10000).With("iat", nil)
		}, reason: "max_token_lifetime"},
		{name: "exp - iat one second over the lifetime", claims: func(e *env) oidc.Claims {
			return good(e).With("iat", at(e, -time.Hour)).With("nbf", nil).With("exp", at(e, auth.DefaultMaxTokenLifetime-time.Hour+time.Second))
		}, reason: "max_token_lifetime"},
		{name: "exp - iat exactly the lifetime", claims: func(e *env) oidc.Claims {
			return good(e).With("iat", at(e, -time.Hour)).With("nbf", nil).With("exp", at(e, auth.DefaultMaxTokenLifetime-time.Hour))
		}},
		{name: "exp in year 10000 with no lifetime limit", cfg: noLimit,
			claims: func(e *env) oidc.Claims { return good(e).With("exp", year10000) }},

		{name: "duplicate sub in the payload", claims: func(e *env) oidc.Claims { return nil },
			opts: func(e *env) []oidc.MintOption {
				b, _ := json.Marshal(good(e))
				return []oidc.MintOption{oidc.WithRawPayload(append(b[:len(b)-1], []byte(`,"sub":"root"}`)...))}
			}, reason: "appears twice"},
		{name: "duplicate exp in the payload", claims: func(e *env) oidc.Claims { return nil },
			opts: func(e *env) []oidc.MintOption {
				b, _ := json.Marshal(good(e))
				return []oidc.MintOption{oidc.WithRawPayload(append(b[:len(b)-1], []byte(`,"exp":`+itoa(year10000)+`}`)...))}
			}, reason: "appears twice"},

		{name: "aud with a trailing space", claims: func(e *env) oidc.Claims { return good(e).With("aud", e.iss.Audience()+" ") },
			reason: `"aud" not satisfied`},
		{name: "aud in upper case", claims: func(e *env) oidc.Claims { return good(e).With("aud", strings.ToUpper(e.iss.Audience())) },
			reason: `"aud" not satisfied`},
		{name: "aud with a NUL", claims: func(e *env) oidc.Claims { return good(e).With("aud", e.iss.Audience()+"\x00") },
			reason: `"aud" not satisfied`},
		{name: "aud a prefix", claims: func(e *env) oidc.Claims { return good(e).With("aud", e.iss.Audience()[:4]) },
			reason: `"aud" not satisfied`},
		{name: "aud array with a longer one", claims: func(e *env) oidc.Claims {
			return good(e).With("aud", []string{e.iss.Audience() + "-admin"})
		}, reason: `"aud" not satisfied`},
		{name: "aud a number", claims: func(e *env) oidc.Claims { return good(e).With("aud", 1) }, reason: "aud is neither"},
		{name: "aud an object", claims: func(e *env) oidc.Claims {
			return good(e).With("aud", map[string]string{"aud": e.iss.Audience()})
		}, reason: "aud is neither"},
		{name: "aud array with ours and a null", claims: func(e *env) oidc.Claims {
			return good(e).With("aud", raw(`["`+e.iss.Audience()+`",null]`))
		}, reason: "aud is neither"},
		{name: "aud array with ours and a number", claims: func(e *env) oidc.Claims {
			return good(e).With("aud", raw(`["`+e.iss.Audience()+`",1]`))
		}, reason: "aud is neither"},
		{name: "aud escaped but equal", claims: func(e *env) oidc.Claims {
			return good(e).With("aud", raw(`"\u0070`+e.iss.Audience()[1:]+`"`))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, tc.cfg)
			var opts []oidc.MintOption
			if tc.opts != nil {
				opts = tc.opts(e)
			}
			tok := e.iss.MustMint(tc.claims(e), opts...)
			p, err := e.a.Verify(ctx(t), tok)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v (reason %s), want accepted", err, reason(err))
				}
				if p == nil {
					t.Fatal("no principal")
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token, want rejected for %q", tc.reason)
			}
			got := wantUnauthenticated(t, err)
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("rejected for %q, want a reason containing %q", got.Reason, tc.reason)
			}
		})
	}
}

func TestMaxTokenLifetimeIsValidated(t *testing.T) {
	c := auth.DefaultConfig()
	c.Issuer, c.Audience = "https://idp.example", "prism-proxy"
	c.MaxTokenLifetime = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "max_token_lifetime") {
		t.Fatalf("Validate = %v, want an error naming max_token_lifetime", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
