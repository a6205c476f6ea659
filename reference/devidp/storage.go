package devidp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the provider's in-memory op.Storage (with device
// authorization): one user, the configured clients, and every auth request,
// device authorization, access token and refresh token, until they expire.
type storage struct {
	cfg     Config
	key     *signingKey
	clients map[string]*client
	now     func() time.Time

	mu       sync.Mutex
	requests map[string]*authRequest // by id
	codes    map[string]string       // code → auth request id
	devices  map[string]*device      // by device code
	users    map[string]string       // user code → device code
	access   map[string]*accessToken // by id
	refresh  map[string]*refreshToken
}

type device struct {
	state    *op.DeviceAuthorizationState
	userCode string
}

type accessToken struct {
	id, subject, clientID string
	scopes                []string
	expires               time.Time
}

// refreshToken is one refresh token; rotation replaces it with a new one.
type refreshToken struct {
	token, subject, clientID string
	audience, scopes, amr    []string
	authTime, expires        time.Time
}

func newStorage(cfg Config, key *signingKey) *storage {
	s := &storage{cfg: cfg, key: key, now: time.Now, clients: map[string]*client{},
		requests: map[string]*authRequest{}, codes: map[string]string{}, devices: map[string]*device{},
		users: map[string]string{}, access: map[string]*accessToken{}, refresh: map[string]*refreshToken{}}
	for _, id := range cfg.Clients {
		s.clients[id] = &client{id: id, redirects: cfg.RedirectURIs, idTokenTTL: cfg.AccessTokenTTL}
	}
	return s
}

func randomID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// audience is the aud of every token: the proxy's audience and the client.
func (s *storage) audience(clientID string) []string {
	return []string{s.cfg.Audience, clientID}
}

// checkPassword reports whether user and password are the configured user's.
func (s *storage) checkPassword(user, password string) error {
	if user != s.cfg.User || password != s.cfg.Password {
		return errors.New("wrong user name or password")
	}
	return nil
}

// CreateAuthRequest implements op.Storage. A public client must use PKCE.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method S256 is required")
	}
	a := &authRequest{id: randomID(), created: s.now(), clientID: req.ClientID, redirect: req.RedirectURI,
		state: req.State, nonce: req.Nonce, scopes: req.Scopes, responseType: req.ResponseType,
		responseMode: req.ResponseMode, subject: userID, audience: s.audience(req.ClientID),
		challenge: &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.requests { // forget abandoned logins
		if a.created.Sub(old.created) > s.cfg.DeviceCodeTTL {
			s.deleteAuthRequest(id)
		}
	}
	s.requests[a.id] = a
	return a, nil
}

func (s *storage) authRequest(id string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[id]
	if !ok || s.now().Sub(a.created) > s.cfg.DeviceCodeTTL {
		return nil, fmt.Errorf("no auth request %q", id)
	}
	return a, nil
}

// AuthRequestByID implements op.Storage.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	return s.authRequest(id)
}

// AuthRequestByCode implements op.Storage.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("unknown code")
	}
	return s.authRequest(id)
}

// SaveAuthCode implements op.Storage.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest implements op.Storage: a code is used once.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteAuthRequest(id)
	return nil
}

// deleteAuthRequest forgets auth request id and its code; s.mu is held.
func (s *storage) deleteAuthRequest(id string) {
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
}

// completeLogin marks auth request id as authenticated by the user.
func (s *storage) completeLogin(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[id]
	if !ok {
		return fmt.Errorf("no auth request %q", id)
	}
	a.subject, a.done, a.authTime = s.cfg.User, true, s.now()
	return nil
}

func (s *storage) newAccess(subject, clientID string, scopes []string) *accessToken {
	now := s.now()
	t := &accessToken{id: randomID(), subject: subject, clientID: clientID, scopes: scopes, expires: now.Add(s.cfg.AccessTokenTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.access { // forget expired ones: nothing looks them up any more
		if now.After(old.expires) {
			delete(s.access, id)
		}
	}
	s.access[t.id] = t
	return t
}

// CreateAccessToken implements op.Storage.
func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	t := s.newAccess(req.GetSubject(), clientOf(req), req.GetScopes())
	return t.id, t.expires, nil
}

func clientOf(req op.TokenRequest) string {
	if c, ok := req.(interface{ GetClientID() string }); ok {
		return c.GetClientID()
	}
	return ""
}

// CreateAccessAndRefreshTokens implements op.Storage. With current set (a
// refresh grant) the current refresh token is replaced by a new one
// (rotation): using it again fails.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	now := s.now()
	r := &refreshToken{token: randomID(), subject: req.GetSubject(), clientID: clientOf(req),
		audience: req.GetAudience(), scopes: req.GetScopes(), authTime: now, expires: now.Add(s.cfg.RefreshTokenTTL)}
	if ir, ok := req.(op.IDTokenRequest); ok {
		r.amr, r.authTime = ir.GetAMR(), ir.GetAuthTime()
	}
	s.mu.Lock()
	if current != "" {
		old, ok := s.refresh[current]
		if !ok || !now.Before(old.expires) {
			delete(s.refresh, current)
			s.mu.Unlock()
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the refresh token is unknown, used, revoked or expired")
		}
		delete(s.refresh, current)
	}
	for k, old := range s.refresh { // forget expired ones
		if !now.Before(old.expires) {
			delete(s.refresh, k)
		}
	}
	s.refresh[r.token] = r
	s.mu.Unlock()
	t := s.newAccess(r.subject, r.clientID, r.scopes)
	return t.id, r.token, t.expires, nil
}

// TokenRequestByRefreshToken implements op.Storage: an unknown, used,
// revoked or expired refresh token is refused.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refresh[token]
	if !ok {
		return nil, errors.New("the refresh token is unknown, used or revoked")
	}
	if !s.now().Before(r.expires) {
		delete(s.refresh, token)
		return nil, errors.New("the refresh token expired")
	}
	c := *r
	return &refreshRequest{&c}, nil
}

// TerminateSession implements op.Storage: every token of the user and
// client goes.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.access {
		if t.subject == userID && t.clientID == clientID {
			delete(s.access, k)
		}
	}
	for k, r := range s.refresh {
		if r.subject == userID && r.clientID == clientID {
			delete(s.refresh, k)
		}
	}
	return nil
}

// GetRefreshTokenInfo implements op.Storage.
func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refresh[token]
	if !ok || r.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return r.subject, r.token, nil
}

// RevokeToken implements op.Storage (RFC 7009: an unknown token is not an
// error).
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.access[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		delete(s.access, tokenOrID)
	}
	if r, ok := s.refresh[tokenOrID]; ok {
		if r.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		delete(s.refresh, tokenOrID)
	}
	return nil
}

// SigningKey implements op.Storage.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

// SignatureAlgorithms implements op.Storage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.Storage: the JWKS.
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{s.key.public()}, nil }

// GetClientByClientID implements op.Storage.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("no client %q", id)
	}
	return c, nil
}

// AuthorizeClientIDSecret implements op.Storage: every client is public.
func (s *storage) AuthorizeClientIDSecret(context.Context, string, string) error {
	return errors.New("no client has a secret: every client of prism-dev-idp is public")
}

// SetUserinfoFromScopes implements op.Storage (deprecated; see
// SetUserinfoFromRequest).
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	s.userinfo(info, req.GetSubject(), scopes)
	return nil
}

func (s *storage) userinfo(info *oidc.UserInfo, subject string, scopes []string) {
	info.Subject = subject
	if subject != s.cfg.User {
		return
	}
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = s.cfg.User, true
		case oidc.ScopeProfile:
			info.PreferredUsername = s.cfg.User
		}
	}
	info.AppendClaims(GroupsClaim, slices.Clone(s.cfg.Groups))
}

// SetUserinfoFromToken implements op.Storage (the userinfo endpoint).
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.access[tokenID]
	s.mu.Unlock()
	if !ok || !s.now().Before(t.expires) {
		return errors.New("the access token is unknown, revoked or expired")
	}
	s.userinfo(info, subject, t.scopes)
	return nil
}

// SetIntrospectionFromToken implements op.Storage.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.access[tokenID]
	s.mu.Unlock()
	if !ok || !s.now().Before(t.expires) {
		return errors.New("the access token is unknown, revoked or expired")
	}
	resp.Active, resp.Subject, resp.ClientID, resp.Scope = true, subject, t.clientID, t.scopes
	resp.Audience = s.audience(t.clientID)
	return nil
}

// GetPrivateClaimsFromScopes implements op.Storage.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, _ string, scopes []string) (map[string]any, error) {
	return s.privateClaims(userID, scopes), nil
}

// GetPrivateClaimsFromRequest implements op.CanGetPrivateClaimsFromRequest:
// the claims an access token carries besides the registered ones.
func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	return s.privateClaims(req.GetSubject(), req.GetScopes()), nil
}

func (s *storage) privateClaims(subject string, scopes []string) map[string]any {
	c := map[string]any{"scope": strings.Join(scopes, " ")}
	if subject == s.cfg.User {
		c[GroupsClaim] = slices.Clone(s.cfg.Groups)
		c["email"] = s.cfg.User
	}
	return c
}

// GetKeyByIDAndClientID implements op.Storage: no JWT profile grant.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("prism-dev-idp has no JWT profile grant")
}

// ValidateJWTProfileScopes implements op.Storage: no JWT profile grant.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("prism-dev-idp has no JWT profile grant")
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// StoreDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	if _, ok := s.clients[clientID]; !ok {
		return fmt.Errorf("no client %q", clientID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for code, d := range s.devices { // purge expired ones: user codes are short
		if now.After(d.state.Expires) {
			delete(s.users, d.userCode)
			delete(s.devices, code)
		}
	}
	if _, ok := s.users[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	// expires is on the system clock (the op's); kept on s.now's.
	s.devices[deviceCode] = &device{userCode: userCode, state: &op.DeviceAuthorizationState{
		ClientID: clientID, Audience: []string{s.cfg.Audience}, Scopes: scopes, Expires: now.Add(time.Until(expires))}}
	s.users[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState implements op.DeviceAuthorizationStorage. A
// completed or denied authorization is answered once, then forgotten, so a
// device code yields one token.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, errors.New("no such device code for this client")
	}
	st := *d.state
	st.Expires = time.Now().Add(st.Expires.Sub(s.now())) // back on the op's clock
	if st.Done || st.Denied {
		delete(s.devices, deviceCode)
		delete(s.users, d.userCode)
	}
	return &st, nil
}

// pendingDevice returns the pending device authorization of userCode; s.mu
// is held.
func (s *storage) pendingDevice(userCode string) (*op.DeviceAuthorizationState, error) {
	d, ok := s.devices[s.users[userCode]]
	if !ok || s.now().After(d.state.Expires) {
		return nil, fmt.Errorf("no pending device authorization has user code %q", userCode)
	}
	if d.state.Done || d.state.Denied {
		return nil, fmt.Errorf("user code %q was already answered", userCode)
	}
	return d.state, nil
}

// answerDevice approves (as the user) or denies the authorization of
// userCode.
func (s *storage) answerDevice(userCode string, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.pendingDevice(userCode)
	if err != nil {
		return err
	}
	if approve {
		st.Done, st.Subject, st.AMR, st.AuthTime = true, s.cfg.User, []string{"pwd"}, s.now()
	} else {
		st.Denied = true
	}
	return nil
}

// authRequest is an authorization request (code flow) until its code is
// exchanged.
type authRequest struct {
	id, clientID, redirect, state, nonce, subject string
	scopes, audience                              []string
	responseType                                  oidc.ResponseType
	responseMode                                  oidc.ResponseMode
	challenge                                     *oidc.CodeChallenge
	created, authTime                             time.Time
	done                                          bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirect }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// refreshRequest is op.RefreshTokenRequest over a copy of a refresh token.
type refreshRequest struct{ r *refreshToken }

func (r *refreshRequest) GetAMR() []string             { return r.r.amr }
func (r *refreshRequest) GetAudience() []string        { return r.r.audience }
func (r *refreshRequest) GetAuthTime() time.Time       { return r.r.authTime }
func (r *refreshRequest) GetClientID() string          { return r.r.clientID }
func (r *refreshRequest) GetScopes() []string          { return r.r.scopes }
func (r *refreshRequest) GetSubject() string           { return r.r.subject }
func (r *refreshRequest) SetCurrentScopes(sc []string) { r.r.scopes = sc }

// client is a public client (no secret): device flow, code flow with PKCE,
// refresh tokens; its access tokens are JWTs.
type client struct {
	id         string
	redirects  []string
	idTokenTTL time.Duration
}

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodNone }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
}
func (c *client) LoginURL(id string) string           { return loginPath + "?" + authRequestParam + "=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.idTokenTTL }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
