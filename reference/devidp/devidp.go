// Package devidp is prism-dev-idp, a small OpenID Provider for local runs
// and tests, built on github.com/zitadel/oidc/v3/pkg/op. It is not for
// production: one user, public clients, everything in memory.
//
// It serves, under its issuer http://127.0.0.1:<port>:
//
//   - discovery (/.well-known/openid-configuration) and the JWKS (/keys),
//     one RS256 key, generated at start or loaded from a file;
//   - the device authorization grant (RFC 8628): /device_authorization, and
//     the verification page /device, an HTML form where the user types the
//     user code (prefilled from verification_uri_complete), their name and
//     password, and approves or denies;
//   - the authorization code grant with PKCE (S256 required): /authorize,
//     the login form /login, the callback /authorize/callback;
//   - the token endpoint (/oauth/token): codes, device codes, and refresh
//     tokens, rotated at each use (a used refresh token fails); the
//     revocation endpoint (/revoke, RFC 7009), introspection, userinfo and
//     end_session.
//
// # Tokens
//
// Access tokens are JWTs signed with the provider's key: iss the issuer,
// sub the user (dev@local.prism), aud [Config.Audience, client id]
// ("prism-proxy" by default, what the reference proxy checks), exp after
// Config.AccessTokenTTL, a "scope" claim (the granted scopes,
// space-separated) and a "groups" claim (an array): the user's groups,
// Config.Groups. The reference proxy reads grants from the groups claim
// (grants.claim: groups): with its default pattern
// "prism:{namespace}:{access}" a group "prism:orders:read" grants read on
// orders, and any other group name can be mapped to namespaces
// (grants.mapping). Refresh tokens (ask for the offline_access scope) are
// opaque, live Config.RefreshTokenTTL from their issue, and are replaced by
// a new one at each refresh.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// GroupsClaim is the claim of an access token that carries the user's groups.
const GroupsClaim = "groups"

// Defaults of [DefaultConfig].
const (
	DefaultUser            = "dev@local.prism"
	DefaultPassword        = "prism-dev"
	DefaultAudience        = "prism-proxy"
	DefaultClient          = "prismctl"
	DefaultAccessTokenTTL  = 5 * time.Minute
	DefaultRefreshTokenTTL = 24 * time.Hour
	DefaultDeviceCodeTTL   = 5 * time.Minute
	DefaultPollInterval    = 5 * time.Second
)

// DefaultGroups are the user's groups unless configured: read and write on
// the namespace "default".
var DefaultGroups = []string{"prism:default:read", "prism:default:write"}

// Config configures a [Provider]. Start from [DefaultConfig].
type Config struct {
	// Issuer is the issuer URL, http://127.0.0.1:<port> (http is accepted
	// on a loopback host only).
	Issuer string
	// Audience is the first aud of every access token.
	Audience string
	// User and Password are the one user's name (also its sub and email)
	// and password.
	User, Password string
	// Groups are the user's groups, the access token's groups claim.
	Groups []string
	// Clients are the ids of the public clients (device flow, code flow
	// with PKCE, refresh tokens).
	Clients []string
	// RedirectURIs are the code flow's redirect URIs of every client; a
	// loopback one (http://127.0.0.1/callback) matches any port.
	RedirectURIs []string
	// AccessTokenTTL, RefreshTokenTTL and DeviceCodeTTL are how long each
	// lives (a device code and a login form, from when they were issued).
	AccessTokenTTL, RefreshTokenTTL, DeviceCodeTTL time.Duration
	// PollInterval is the device flow's polling interval (whole seconds,
	// at least 1s).
	PollInterval time.Duration
	// Key signs the tokens; nil generates one.
	Key *rsa.PrivateKey
	// Now is the clock of the lifetimes the provider keeps: an access
	// token's exp, refresh tokens, device codes, login requests (default
	// time.Now). A JWT's iat and nbf come from the system clock.
	Now func() time.Time
}

// DefaultConfig returns the defaults, without an issuer.
func DefaultConfig() Config {
	return Config{Audience: DefaultAudience, User: DefaultUser, Password: DefaultPassword,
		Groups: append([]string(nil), DefaultGroups...), Clients: []string{DefaultClient},
		RedirectURIs:   []string{"http://127.0.0.1/callback", "http://localhost/callback"},
		AccessTokenTTL: DefaultAccessTokenTTL, RefreshTokenTTL: DefaultRefreshTokenTTL,
		DeviceCodeTTL: DefaultDeviceCodeTTL, PollInterval: DefaultPollInterval}
}

// Validate checks the config, naming each bad field.
func (c Config) Validate() error {
	var errs []error
	add := func(f, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", f, fmt.Sprintf(format, a...)))
	}
	if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		add("issuer", "%q is not a URL like http://127.0.0.1:9000", c.Issuer)
	} else if err := op.ValidateIssuer(c.Issuer, true); err != nil {
		add("issuer", "%v", err)
	}
	if c.Audience == "" {
		add("audience", "is required")
	}
	if c.User == "" || c.Password == "" {
		add("user", "a user name and a password are required")
	}
	for i, g := range c.Groups {
		if g == "" || strings.ContainsAny(g, " \t\n") {
			add(fmt.Sprintf("groups[%d]", i), "%q must be non-empty, without spaces", g)
		}
	}
	if len(c.Clients) == 0 {
		add("clients", "at least one client id is required")
	}
	for f, d := range map[string]time.Duration{"access_token_ttl": c.AccessTokenTTL, "refresh_token_ttl": c.RefreshTokenTTL, "device_code_ttl": c.DeviceCodeTTL} {
		if d < time.Second {
			add(f, "must be at least 1s, got %v", d)
		}
	}
	if c.PollInterval < time.Second || c.PollInterval%time.Second != 0 {
		add("poll_interval", "must be whole seconds, at least 1s, got %v", c.PollInterval)
	}
	return errors.Join(errs...)
}

// Provider is a running OpenID Provider: an http.Handler.
type Provider struct {
	cfg     Config
	op      *op.Provider
	store   *storage
	handler http.Handler
	kid     string
}

// New builds a provider for cfg.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("prism-dev-idp config: %w", err)
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	k := cfg.Key
	if k == nil {
		var err error
		if k, err = GenerateKey(); err != nil {
			return nil, err
		}
	}
	sk, err := newSigningKey(k)
	if err != nil {
		return nil, err
	}
	store := newStorage(cfg, sk)
	if cfg.Now != nil {
		store.now = cfg.Now
	}
	var crypto [32]byte
	if _, err := rand.Read(crypto[:]); err != nil {
		return nil, fmt.Errorf("make crypto key: %w", err)
	}
	opc := &op.Config{
		CryptoKey:             crypto,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime: cfg.DeviceCodeTTL, PollInterval: cfg.PollInterval,
			UserFormPath: devicePath, UserCode: op.UserCodeBase20,
		},
	}
	provider, err := op.NewProvider(opc, store, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("start the OpenID provider: %w", err)
	}
	p := &Provider{cfg: cfg, op: provider, store: store, kid: sk.kid}
	mux := http.NewServeMux()
	intercept := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux.Handle(loginPath, intercept.Handler(http.HandlerFunc(p.serveLogin)))
	mux.HandleFunc(devicePath, p.serveDevice)
	mux.Handle("/", provider)
	p.handler = mux
	return p, nil
}

// ServeHTTP implements http.Handler.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// Issuer is the issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// KeyID is the kid of the signing key.
func (p *Provider) KeyID() string { return p.kid }

// callbackURL is where the login form sends the browser once the user is
// authenticated: the provider issues the code there.
func (p *Provider) callbackURL(ctx context.Context, id string) string {
	return op.AuthCallbackURL(p.op)(ctx, id)
}
