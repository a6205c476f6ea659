package devidp_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hdevidp "github.com/prism-suite/prism/harness/devidp"
	"github.com/prism-suite/prism/reference/auth"
	"github.com/prism-suite/prism/reference/devidp"
)

// RSA keys are slow to make: the tests share one.
var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
)

func sharedKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if key, err = devidp.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	})
	return key
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// serve starts a provider on 127.0.0.1 with cfg changed by edit.
func serve(t *testing.T, edit func(*devidp.Config)) (*devidp.Provider, *clock) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	cfg := devidp.DefaultConfig()
	cfg.Issuer = "http://" + ln.Addr().String()
	cfg.Key = sharedKey(t)
	cfg.PollInterval = time.Second
	cfg.Groups = []string{"prism:orders:read", "prism:orders:write", "analysts"}
	cfg.Now = clk.now
	if edit != nil {
		edit(&cfg)
	}
	p, err := devidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p, clk
}

func oauthConfig(t *testing.T, issuer string) *oauth2.Config {
	t.Helper()
	party, err := rp.NewRelyingPartyOIDC(context.Background(), issuer, devidp.DefaultClient, "", "", nil)
	if err != nil {
		t.Fatalf("discovery through zitadel's relying party: %v", err)
	}
	e := party.OAuthConfig().Endpoint
	if d, ok := party.(interface{ GetDeviceAuthorizationEndpoint() string }); ok {
		e.DeviceAuthURL = d.GetDeviceAuthorizationEndpoint()
	}
	if e.DeviceAuthURL == "" || e.TokenURL == "" || e.AuthURL == "" {
		t.Fatalf("discovery lacks an endpoint: %+v", e)
	}
	e.AuthStyle = oauth2.AuthStyleInParams
	return &oauth2.Config{ClientID: devidp.DefaultClient, Endpoint: e, Scopes: []string{"openid", "offline_access"}}
}

// deviceLogin runs the device flow with x/oauth2 and approves it through
// the verification form, as the user.
func deviceLogin(t *testing.T, cfg *oauth2.Config, password string) *oauth2.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if !strings.Contains(da.VerificationURIComplete, url.QueryEscape(da.UserCode)) {
		t.Fatalf("verification_uri_complete %q does not carry the user code %q", da.VerificationURIComplete, da.UserCode)
	}
	if err := hdevidp.SubmitDeviceForm(ctx, http.DefaultClient, da.VerificationURIComplete, devidp.DefaultUser, password, "approve"); err != nil {
		t.Fatalf("approve the device: %v", err)
	}
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	return tok
}

func authorizer(t *testing.T, issuer string) *auth.Authorizer {
	t.Helper()
	c := auth.DefaultConfig()
	c.Issuer, c.Audience = issuer, devidp.DefaultAudience
	c.Grants.Claim = devidp.GroupsClaim
	c.Grants.Mapping = map[string]auth.NamespaceGrants{"analysts": {Read: []string{"events"}}}
	a, err := auth.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func TestDeviceFlowTokenIsAJWTTheProxyAcceptsAndScopes(t *testing.T) {
	p, _ := serve(t, nil)
	tok := deviceLogin(t, oauthConfig(t, p.Issuer()), devidp.DefaultPassword)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token though offline_access was asked for")
	}

	// A relying party's own check: the JWKS from discovery, jwx's validation.
	set, err := jwk.Fetch(context.Background(), p.Issuer()+"/keys")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(tok.AccessToken), jwt.WithKeySet(set), jwt.WithIssuer(p.Issuer()),
		jwt.WithAudience(devidp.DefaultAudience), jwt.WithValidate(true))
	if err != nil {
		t.Fatalf("the access token does not verify against the provider's JWKS: %v", err)
	}
	if sub, _ := parsed.Subject(); sub != devidp.DefaultUser {
		t.Errorf("sub = %q, want %q", sub, devidp.DefaultUser)
	}
	var groups []any
	if err := parsed.Get(devidp.GroupsClaim, &groups); err != nil || len(groups) != 3 {
		t.Errorf("groups claim = %v (%v), want the 3 configured groups", groups, err)
	}

	// The proxy's authorizer: direct grants from the groups, and a mapped group.
	a := authorizer(t, p.Issuer())
	ctx := context.Background()
	for _, c := range []struct {
		ns     string
		access auth.Access
		want   codes.Code
	}{
		{"orders", auth.Read, codes.OK}, {"orders", auth.Write, codes.OK},
		{"events", auth.Read, codes.OK}, {"events", auth.Write, codes.PermissionDenied},
		{"other", auth.Read, codes.PermissionDenied},
	} {
		_, err := a.Authorize(ctx, tok.AccessToken, c.ns, c.access)
		if got := status.Code(err); got != c.want {
			t.Errorf("Authorize(%s, %v) = %v (%v), want %v", c.ns, c.access, got, err, c.want)
		}
	}
}

func TestRefreshRotatesAndTheOldRefreshTokenFails(t *testing.T) {
	p, _ := serve(t, nil)
	cfg := oauthConfig(t, p.Issuer())
	first := deviceLogin(t, cfg, devidp.DefaultPassword)
	ctx := context.Background()
	refresh := func(rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}
	second, err := refresh(first.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if second.AccessToken == first.AccessToken || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("a refresh must give a new access token and a new refresh token")
	}
	if _, err := authorizer(t, p.Issuer()).Authorize(ctx, second.AccessToken, "orders", auth.Write); err != nil {
		t.Errorf("the refreshed access token is refused: %v", err)
	}
	if _, err := refresh(first.RefreshToken); !isInvalidGrant(err) {
		t.Errorf("reusing a rotated refresh token: err = %v, want invalid_grant", err)
	}
	if _, err := refresh(second.RefreshToken); err != nil {
		t.Errorf("the new refresh token: %v", err)
	}
}

func isInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

func TestRevokedAndExpiredRefreshTokensFail(t *testing.T) {
	p, clk := serve(t, func(c *devidp.Config) { c.RefreshTokenTTL = time.Hour })
	cfg := oauthConfig(t, p.Issuer())
	ctx := context.Background()
	refresh := func(rt string) error {
		_, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
		return err
	}

	revoked := deviceLogin(t, cfg, devidp.DefaultPassword)
	party, err := rp.NewRelyingPartyOIDC(ctx, p.Issuer(), devidp.DefaultClient, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.RevokeToken(ctx, party, revoked.RefreshToken, "refresh_token"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := refresh(revoked.RefreshToken); !isInvalidGrant(err) {
		t.Errorf("a revoked refresh token: err = %v, want invalid_grant", err)
	}

	expiring := deviceLogin(t, cfg, devidp.DefaultPassword)
	clk.add(time.Hour - time.Second)
	kept := deviceLogin(t, cfg, devidp.DefaultPassword)
	clk.add(time.Second)
	if err := refresh(expiring.RefreshToken); !isInvalidGrant(err) {
		t.Errorf("a refresh token an hour old (its lifetime): err = %v, want invalid_grant", err)
	}
	if err := refresh(kept.RefreshToken); err != nil {
		t.Errorf("a refresh token a second old: %v", err)
	}
}

func TestDeviceFormRefusesAWrongPasswordAndDenyIsAnswered(t *testing.T) {
	p, _ := serve(t, nil)
	cfg := oauthConfig(t, p.Issuer())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = hdevidp.SubmitDeviceForm(ctx, http.DefaultClient, da.VerificationURIComplete, devidp.DefaultUser, "wrong", "approve")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "Wrong user name or password") {
		t.Fatalf("a wrong password: err = %v, want 401 saying so", err)
	}
	if err := hdevidp.SubmitDeviceForm(ctx, http.DefaultClient, da.VerificationURIComplete, devidp.DefaultUser, devidp.DefaultPassword, "deny"); err != nil {
		t.Fatalf("deny: %v", err)
	}
	_, err = cfg.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Errorf("a denied device: err = %v, want access_denied", err)
	}
	// An answered code cannot be approved afterwards.
	err = hdevidp.SubmitDeviceForm(ctx, http.DefaultClient, da.VerificationURIComplete, devidp.DefaultUser, devidp.DefaultPassword, "approve")
	if err == nil {
		t.Error("approving a denied code succeeded")
	}
}

func TestCodeFlowWithPKCE(t *testing.T) {
	p, _ := serve(t, nil)
	cfg := oauthConfig(t, p.Issuer())
	cfg.RedirectURL = "http://127.0.0.1:49152/callback" // a loopback redirect, any port
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	stopAtCallback := &http.Client{CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), cfg.RedirectURL) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	authURL := cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier))
	resp, err := hdevidp.SubmitLoginForm(ctx, stopAtCallback, authURL, devidp.DefaultUser, devidp.DefaultPassword)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || !strings.HasPrefix(loc.String(), cfg.RedirectURL) {
		t.Fatalf("after login: %s, Location %v (%v), want a redirect to %s", resp.Status, loc, err, cfg.RedirectURL)
	}
	if loc.Query().Get("state") != "state-1" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s lacks the state or the code", loc)
	}
	code := loc.Query().Get("code")
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption("not-the-verifier-"+verifier)); err == nil {
		t.Fatal("a code was exchanged with the wrong PKCE verifier")
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange with the verifier: %v", err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	keys := rp.NewRemoteKeySet(http.DefaultClient, p.Issuer()+"/keys")
	v := rp.NewIDTokenVerifier(p.Issuer(), devidp.DefaultClient, keys)
	claims, err := rp.VerifyTokens[*oidc.IDTokenClaims](ctx, tok.AccessToken, idToken, v)
	if err != nil {
		t.Fatalf("the ID token does not verify with zitadel's relying party: %v", err)
	}
	if claims.Subject != devidp.DefaultUser {
		t.Errorf("ID token sub = %q", claims.Subject)
	}
	if _, err := authorizer(t, p.Issuer()).Authorize(ctx, tok.AccessToken, "orders", auth.Read); err != nil {
		t.Errorf("the code flow's access token is refused: %v", err)
	}

	// Without PKCE the request is refused before any login.
	resp, err = stopAtCallback.Get(cfg.AuthCodeURL("state-2"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ = resp.Location()
	if loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("an authorization request without PKCE: %s, Location %v, want error=invalid_request", resp.Status, loc)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	c := devidp.DefaultConfig()
	c.Issuer = "http://10.0.0.1:9400/path"
	c.Groups = []string{"a b"}
	c.PollInterval = 1500 * time.Millisecond
	err := c.Validate()
	for _, want := range []string{"issuer:", "groups[0]:", "poll_interval:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
}

func TestMainRefusesANonLoopbackListenAndKeepsTheKeyFile(t *testing.T) {
	var stderr strings.Builder
	if code := devidp.Main([]string{"--listen", "0.0.0.0:0"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "loopback") {
		t.Errorf("--listen 0.0.0.0:0: exit %d, stderr %q; want 2 naming loopback", code, stderr.String())
	}
	dir := t.TempDir()
	kf := filepath.Join(dir, "key.pem")
	if err := devidp.WriteKey(kf, sharedKey(t)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(kf)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode(), err)
	}
	k, err := devidp.LoadKey(kf)
	if err != nil || !k.Equal(sharedKey(t)) {
		t.Fatalf("LoadKey: %v", err)
	}
	// The kid follows the key: the same key file, the same kid after a restart.
	a, _ := serve(t, func(c *devidp.Config) { c.Key = k })
	b, _ := serve(t, func(c *devidp.Config) { c.Key = k })
	if a.KeyID() != b.KeyID() || !strings.HasPrefix(a.KeyID(), "dev-") {
		t.Errorf("kids %q and %q of one key differ", a.KeyID(), b.KeyID())
	}
	if err := os.WriteFile(kf+".bad", []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devidp.LoadKey(kf + ".bad"); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("LoadKey(garbage) = %v", err)
	}
}
