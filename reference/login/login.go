package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"golang.org/x/oauth2"
)

// DefaultScopes are the scopes a login asks for: an ID token and a refresh
// token.
var DefaultScopes = []string{"openid", "offline_access"}

// Options configure [Login].
type Options struct {
	// Issuer is the OIDC issuer (discovery at
	// <Issuer>/.well-known/openid-configuration).
	Issuer string
	// ClientID is the public OAuth client (default "prismctl").
	ClientID string
	// Scopes (default [DefaultScopes]).
	Scopes []string
	// HTTPClient makes the requests (default http.DefaultClient).
	HTTPClient *http.Client
	// Prompt is called once with the verification URI and user code, for
	// the user to open and approve; then Login polls until the user
	// answered, the code expired or ctx ended. An error it returns (it
	// could not show the code; a test could not approve) ends Login with
	// that error, without polling.
	Prompt func(*oauth2.DeviceAuthResponse) error
}

func (o Options) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return http.DefaultClient
}

// Login runs the device authorization grant against the issuer and returns
// the token file's content (not yet saved: see [Save]).
func Login(ctx context.Context, o Options) (*File, error) {
	if o.Issuer == "" {
		return nil, errors.New("login: an issuer is required")
	}
	if o.ClientID == "" {
		o.ClientID = "prismctl"
	}
	if len(o.Scopes) == 0 {
		o.Scopes = DefaultScopes
	}
	disc, err := client.Discover(ctx, o.Issuer, o.httpClient())
	if err != nil {
		return nil, fmt.Errorf("login: discover %s: %w", o.Issuer, err)
	}
	if disc.DeviceAuthorizationEndpoint == "" {
		return nil, fmt.Errorf("login: issuer %s has no device_authorization_endpoint: it does not offer the device flow", o.Issuer)
	}
	cfg := &oauth2.Config{ClientID: o.ClientID, Scopes: o.Scopes, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: disc.DeviceAuthorizationEndpoint, TokenURL: disc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.httpClient())
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("login: start the device flow at %s: %w", disc.DeviceAuthorizationEndpoint, err)
	}
	if o.Prompt != nil {
		if err := o.Prompt(da); err != nil {
			return nil, fmt.Errorf("login: prompt: %w", err)
		}
	}
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("login: wait for approval: %w", err)
	}
	return &File{Issuer: o.Issuer, ClientID: o.ClientID, TokenURL: disc.TokenEndpoint,
		RevocationURL: disc.RevocationEndpoint, Token: tok}, nil
}

// DefaultEarlyExpiry is how long before its expiry a token is refreshed.
const DefaultEarlyExpiry = 30 * time.Second

// TokenSource returns a token source over the token file at path: the
// file's access token until early before it expires (default
// [DefaultEarlyExpiry] when 0), then a new one from the refresh token,
// written back to the file before it is returned. An expired token without
// a refresh token, and a refresh token the issuer refuses, give errors that
// wrap [ErrLoginNeeded]. The file is read once, here.
func TokenSource(ctx context.Context, path string, early time.Duration, httpClient *http.Client) (oauth2.TokenSource, error) {
	f, err := Load(path)
	if err != nil {
		return nil, err
	}
	if early <= 0 {
		early = DefaultEarlyExpiry
	}
	if httpClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, httpClient)
	}
	p := &persisting{ctx: ctx, path: path, file: f}
	return oauth2.ReuseTokenSourceWithExpiry(f.Token, p, early), nil
}

// persisting refreshes the token and writes it back to the token file.
// When the issuer refuses the refresh token because another process
// already used it (the file then holds a newer token), it takes the file's.
type persisting struct {
	ctx  context.Context
	path string
	mu   sync.Mutex
	file *File
}

// Token implements oauth2.TokenSource; it is called only when the cached
// token is about to expire.
func (p *persisting) Token() (*oauth2.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.file.Token
	if old.RefreshToken == "" {
		return nil, fmt.Errorf("the token in %s expires at %s and has no refresh token: %w", p.path, expiry(old), ErrLoginNeeded)
	}
	cfg := &oauth2.Config{ClientID: p.file.ClientID, Endpoint: oauth2.Endpoint{TokenURL: p.file.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	// A token with only the refresh token is invalid, so this refreshes.
	tok, err := cfg.TokenSource(p.ctx, &oauth2.Token{RefreshToken: old.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			// Another process (a second prismctl) may have refreshed first:
			// the refresh token rotated, and the file holds the new one.
			if cur, lerr := Load(p.path); lerr == nil && cur.Token.RefreshToken != old.RefreshToken && cur.Token.Valid() {
				p.file = cur
				return cur.Token, nil
			}
			return nil, fmt.Errorf("refresh the token in %s: %s refused the refresh token (%s): %w", p.path, p.file.Issuer, re.ErrorDescription, ErrLoginNeeded)
		}
		return nil, fmt.Errorf("refresh the token in %s: %w", p.path, err)
	}
	if tok.RefreshToken == "" { // the issuer does not rotate: keep the old one
		tok.RefreshToken = old.RefreshToken
	}
	next := *p.file
	next.Token = tok
	if err := Save(p.path, &next); err != nil {
		return nil, fmt.Errorf("refresh the token: %w", err)
	}
	p.file = &next
	return tok, nil
}

// Logout revokes the refresh token of the token file at path (when the
// issuer has a revocation endpoint) and removes the file. The file is
// removed even when it cannot be read or the revocation fails; the error
// says so. removed reports whether there was a file.
func Logout(ctx context.Context, path string, httpClient *http.Client) (removed bool, err error) {
	f, lerr := Load(path)
	if errors.Is(lerr, os.ErrNotExist) {
		return false, nil
	}
	var rerr error
	if lerr == nil && f.RevocationURL != "" && f.Token.RefreshToken != "" {
		rerr = revoke(ctx, f, httpClient)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("logout: %w", err)
	}
	switch {
	case lerr != nil:
		return true, fmt.Errorf("logout: removed %s without revoking its refresh token: %w", path, lerr)
	case rerr != nil:
		return true, fmt.Errorf("logout: removed %s, but revoking its refresh token at %s failed: %w", path, f.RevocationURL, rerr)
	}
	return true, nil
}

func revoke(ctx context.Context, f *File, httpClient *http.Client) error {
	var opts []rp.Option
	if httpClient != nil {
		opts = append(opts, rp.WithHTTPClient(httpClient))
	}
	party, err := rp.NewRelyingPartyOIDC(ctx, f.Issuer, f.ClientID, "", "", nil, opts...)
	if err != nil {
		return fmt.Errorf("discover %s: %w", f.Issuer, err)
	}
	return rp.RevokeToken(ctx, party, f.Token.RefreshToken, "refresh_token")
}
