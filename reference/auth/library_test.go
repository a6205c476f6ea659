package auth_test

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/prism-suite/prism/harness/oidc"
)

// TestLibraryBehaviour pins down what github.com/lestrrat-go/jwx/v3 (v3.4.0)
// does on its own with the usual call (jwt.Parse with one key, issuer,
// audience and skew), for each rule the package doc lists. Where the library
// accepts ("gap"), this package closes the gap itself, and TestVerifyTokens
// shows it (the case named in closedBy). Where it already rejects, this
// package checks again anyway, so a library change cannot open a hole. If
// this test fails after a library upgrade, the library's behaviour changed:
// re-read the gap list, keep our checks, and update the expectation.
func TestLibraryBehaviour(t *testing.T) {
	e := setup(t, nil)
	pub := e.iss.Key().Public()
	parse := func(tok string, key any, alg jwa.SignatureAlgorithm) error {
		_, err := jwt.ParseString(tok, jwt.WithKey(alg, key), jwt.WithIssuer(e.iss.URL()),
			jwt.WithAudience(e.iss.Audience()), jwt.WithAcceptableSkew(30*time.Second),
			jwt.WithClock(jwt.ClockFunc(e.clock.Now)))
		return err
	}
	atk, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer atk.Close()

	cases := []struct {
		name       string
		token      string
		key        any
		alg        jwa.SignatureAlgorithm
		libRejects bool
		closedBy   string
	}{
		{name: "missing exp", token: e.iss.MustMint(good(e).With("exp", nil)), key: pub, alg: jwa.RS256(),
			libRejects: false, closedBy: "missing exp"},
		{name: "no kid", token: e.iss.MustMint(good(e), oidc.WithoutHeader("kid")), key: pub, alg: jwa.RS256(),
			libRejects: false, closedBy: "no kid"},
		{name: "oversized token (64 KiB)", token: e.iss.MustMint(good(e).Pad(64 << 10)), key: pub, alg: jwa.RS256(),
			libRejects: false, closedBy: "oversized token (9 KiB)"},
		{name: "HS256 over the RSA public key, verified with the key bytes a kid lookup returned",
			token: e.iss.MustMint(good(e), oidc.WithHMAC(e.iss.Key().PublicPEM())), key: e.iss.Key().PublicPEM(), alg: jwa.HS256(),
			libRejects: false, closedBy: "HS256 signed with the RSA public key PEM (HS256 not allowed)"},
		{name: "crit empty", token: e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{})), key: pub, alg: jwa.RS256(),
			libRejects: true, closedBy: "crit empty"},
		{name: "crit naming an extension", token: e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{"x-prism"}), oidc.WithHeader("x-prism", 1)),
			key: pub, alg: jwa.RS256(), libRejects: true, closedBy: "crit naming an extension"},
		{name: "crit naming a registered claim", token: e.iss.MustMint(good(e), oidc.WithHeader("crit", []string{"exp"})),
			key: pub, alg: jwa.RS256(), libRejects: true, closedBy: "crit naming a registered claim"},
		{name: "iat far in the future", token: e.iss.MustMint(good(e).With("nbf", nil).With("iat", at(e, time.Hour))),
			key: pub, alg: jwa.RS256(), libRejects: true, closedBy: "iat far in the future"},
		{name: "alg none", token: e.iss.MustMint(good(e), oidc.WithHeader("alg", "none"), oidc.Unsigned()), key: pub, alg: jwa.RS256(),
			libRejects: true, closedBy: "alg none unsigned"},
		{name: "HS256 over the RSA public key, verified with the RSA key", token: e.iss.MustMint(good(e), oidc.WithHMAC(e.iss.Key().PublicPEM())),
			key: pub, alg: jwa.RS256(), libRejects: true, closedBy: "HS256 signed with the RSA public key PEM (HS256 not allowed)"},
		{name: "jku at an attacker JWKS, signed by the attacker", token: atk.MustMint(good(e), oidc.WithHeader("jku", atk.JWKSURL())),
			key: pub, alg: jwa.RS256(), libRejects: true, closedBy: "jku at an attacker JWKS, our kid"},
		{name: "missing aud", token: e.iss.MustMint(good(e).With("aud", nil)), key: pub, alg: jwa.RS256(),
			libRejects: true, closedBy: "missing aud"},
		{name: "aud array containing ours", token: e.iss.MustMint(good(e).With("aud", []string{"x", e.iss.Audience()})), key: pub, alg: jwa.RS256(),
			libRejects: false, closedBy: "aud array containing ours"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := parse(tc.token, tc.key, tc.alg)
			if rejected := err != nil; rejected != tc.libRejects {
				t.Fatalf("jwx: rejected=%v (%v), want %v; the library's behaviour changed (see %q in TestVerifyTokens)",
					rejected, err, tc.libRejects, tc.closedBy)
			}
			if tc.libRejects {
				t.Logf("jwx rejects on its own (%v); we check too: %q", err, tc.closedBy)
			} else {
				t.Logf("jwx accepts; TestVerifyTokens case %q shows what this package does", tc.closedBy)
			}
		})
	}
	if n := atk.JWKSFetches() + atk.DiscoveryFetches(); n != 0 {
		t.Fatalf("jwx fetched keys named by a token header (%d requests)", n)
	}
}
