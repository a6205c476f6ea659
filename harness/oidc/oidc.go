// Package oidc is an in-process OIDC issuer for tests, listening on
// 127.0.0.1 (httptest). It serves discovery
// (/.well-known/openid-configuration) and a JWKS (/jwks), mints any token —
// good ones, and malformed ones for every attack an auth suite checks
// (custom header members such as alg none, kid, jku, x5u, jwk, x5c and
// crit; custom claims; any key, an attacker's key, HS256 with the RSA public
// key as secret; a stripped signature, a tampered payload, an oversized
// token) — rotates keys, fails on request (500 or a hang until the client
// gives up), and counts the discovery and JWKS requests it serves.
//
//	iss, err := oidc.Start(oidc.DefaultOptions())
//	if err != nil { ... }
//	defer iss.Close()
//	token := iss.MustMint(iss.Claims("alice", "prism:orders:read"))
//	forged := iss.MustMint(iss.Claims("mallory"), oidc.WithHeader("alg", "none"), oidc.Unsigned())
//
// Signatures are made with github.com/lestrrat-go/jwx/v3 (jwsbb.Sign) over
// a header and payload this package encodes itself, so a token can carry any
// header, even one jwx would refuse to produce.
package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// Options configure Start. Use [DefaultOptions] and change fields.
type Options struct {
	// Audience is the aud of tokens from [Issuer.Claims].
	Audience string
	// Alg and KeyID are the first signing key's algorithm and kid; it is
	// generated and published at start.
	Alg, KeyID string
	// Key, when set, is the first signing key instead (Alg and KeyID are
	// then ignored): tests that start many issuers share one key this way,
	// since generating RSA keys is slow.
	Key *Key
	// TokenTTL is the exp - iat of tokens from [Issuer.Claims].
	TokenTTL time.Duration
	// Now is the clock for iat, nbf and exp (default time.Now).
	Now func() time.Time
}

// DefaultOptions returns audience "prism-proxy", an RS256 key "key-1" and
// tokens valid for an hour.
func DefaultOptions() Options {
	return Options{Audience: "prism-proxy", Alg: "RS256", KeyID: "key-1", TokenTTL: time.Hour}
}

// FailMode is how an endpoint misbehaves on request.
type FailMode int

// Fail modes.
const (
	// Serve answers normally.
	Serve FailMode = iota
	// Status500 answers 500 Internal Server Error.
	Status500
	// Hang never answers: the request waits until the client gives up (its
	// deadline) or the issuer closes.
	Hang
)

// Issuer is a running test issuer. Its methods are safe for concurrent use.
type Issuer struct {
	opts   Options
	srv    *httptest.Server
	closed chan struct{}
	once   sync.Once

	mu            sync.Mutex
	published     []*Key
	signing       *Key
	rawJWKS       []byte
	discoveryDoc  map[string]any
	jwksFail      FailMode
	discoveryFail FailMode

	jwksFetches, discoveryFetches atomic.Int64
}

// Start generates the first key, publishes it and serves on 127.0.0.1.
func Start(opts Options) (*Issuer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := opts.Key
	if k == nil {
		var err error
		if k, err = NewKey(opts.Alg, opts.KeyID); err != nil {
			return nil, fmt.Errorf("start issuer: %w", err)
		}
	}
	i := &Issuer{opts: opts, closed: make(chan struct{}), published: []*Key{k}, signing: k}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET /jwks", i.serveJWKS)
	i.srv = httptest.NewServer(mux) // 127.0.0.1:0
	return i, nil
}

// Close releases hung requests and stops the server.
func (i *Issuer) Close() {
	i.once.Do(func() {
		close(i.closed)
		i.srv.Close()
	})
}

// URL is the issuer identifier (the iss of its tokens), http://127.0.0.1:port.
func (i *Issuer) URL() string { return i.srv.URL }

// JWKSURL is where the JWKS is served.
func (i *Issuer) JWKSURL() string { return i.srv.URL + "/jwks" }

// Audience is the aud of tokens from [Issuer.Claims].
func (i *Issuer) Audience() string { return i.opts.Audience }

// Key returns the key tokens are signed with by default.
func (i *Issuer) Key() *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signing
}

// Publish adds keys to the JWKS.
func (i *Issuer) Publish(keys ...*Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, keys...)
}

// Unpublish removes every key with kid from the JWKS (it can still sign).
func (i *Issuer) Unpublish(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := i.published[:0]
	for _, k := range i.published {
		if k.KID != kid {
			out = append(out, k)
		}
	}
	i.published = out
}

// Rotate generates a key with the current key's algorithm and kid, publishes
// it beside the old one and makes it the signing key; it returns the new
// key. Unpublish the old kid to finish the rotation.
func (i *Issuer) Rotate(kid string) (*Key, error) {
	k, err := NewKey(i.Key().Alg, kid)
	if err != nil {
		return nil, fmt.Errorf("rotate key: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, k)
	i.signing = k
	return k, nil
}

// SetSigningKey makes k the default signing key (it need not be published).
func (i *Issuer) SetSigningKey(k *Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.signing = k
}

// ServeRawJWKS serves b as the JWKS instead of the published keys (nil goes
// back to them).
func (i *Issuer) ServeRawJWKS(b []byte) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rawJWKS = b
}

// SetDiscovery serves doc as the discovery document (nil goes back to the
// real one: issuer and jwks_uri).
func (i *Issuer) SetDiscovery(doc map[string]any) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.discoveryDoc = doc
}

// FailJWKS makes the JWKS endpoint misbehave (Serve restores it).
func (i *Issuer) FailJWKS(m FailMode) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.jwksFail = m
}

// FailDiscovery makes the discovery endpoint misbehave (Serve restores it).
func (i *Issuer) FailDiscovery(m FailMode) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.discoveryFail = m
}

// JWKSFetches is how many JWKS requests arrived (failed ones included).
func (i *Issuer) JWKSFetches() int { return int(i.jwksFetches.Load()) }

// DiscoveryFetches is how many discovery requests arrived.
func (i *Issuer) DiscoveryFetches() int { return int(i.discoveryFetches.Load()) }

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	i.discoveryFetches.Add(1)
	i.mu.Lock()
	mode, doc := i.discoveryFail, i.discoveryDoc
	i.mu.Unlock()
	if i.fail(w, r, mode) {
		return
	}
	if doc == nil {
		doc = map[string]any{
			"issuer":                                i.URL(),
			"jwks_uri":                              i.JWKSURL(),
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		}
	}
	writeJSON(w, doc)
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.jwksFetches.Add(1)
	i.mu.Lock()
	mode, raw := i.jwksFail, i.rawJWKS
	keys := append([]*Key(nil), i.published...)
	i.mu.Unlock()
	if i.fail(w, r, mode) {
		return
	}
	if raw != nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
		return
	}
	set := JWKS(keys...)
	writeJSON(w, set)
}

// fail applies a fail mode; it reports whether the request was answered.
func (i *Issuer) fail(w http.ResponseWriter, r *http.Request, m FailMode) bool {
	switch m {
	case Status500:
		http.Error(w, "issuer failing on purpose", http.StatusInternalServerError)
		return true
	case Hang:
		select {
		case <-r.Context().Done():
		case <-i.closed:
		}
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// JWKS returns the JSON key set of the keys' public halves.
func JWKS(keys ...*Key) map[string]any {
	out := []any{}
	for _, k := range keys {
		out = append(out, k.PublicJWK())
	}
	return map[string]any{"keys": out}
}

// Key is a signing key: RSA (RS*, PS*; 2048 bits), EC (ES256/384/512),
// Ed25519 (EdDSA), with a kid.
type Key struct {
	// KID is the key id put in the JWKS and in token headers.
	KID string
	// Alg is the algorithm the key signs with.
	Alg  string
	priv crypto.Signer
	jwk  map[string]any
}

// NewKey generates a key for alg with kid.
func NewKey(alg, kid string) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("new key: algorithm %q is not RS*, PS*, ES* or EdDSA", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	return KeyFrom(priv, alg, kid)
}

// NewRSAKey generates an RSA key of the given size (e.g. 1024, to check that
// weak keys are refused).
func NewRSAKey(bits int, alg, kid string) (*Key, error) {
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	return KeyFrom(priv, alg, kid)
}

// KeyFrom wraps an existing private key.
func KeyFrom(priv crypto.Signer, alg, kid string) (*Key, error) {
	var m map[string]any
	if pub, ok := priv.Public().(*rsa.PublicKey); ok {
		// Encoded by hand: jwx refuses to import RSA keys under 2048 bits,
		// and weak keys are what some tests publish.
		m = map[string]any{"kty": "RSA", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
	} else {
		pub, err := jwk.Import(priv.Public())
		if err != nil {
			return nil, fmt.Errorf("import key: %w", err)
		}
		b, err := json.Marshal(pub)
		if err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
	}
	m["kid"], m["alg"], m["use"] = kid, alg, "sig"
	return &Key{KID: kid, Alg: alg, priv: priv, jwk: m}, nil
}

// WithKID returns the same key material under another kid (for "another
// key with the same kid" tests, use a new key with an existing kid instead).
func (k *Key) WithKID(kid string) *Key {
	c, _ := KeyFrom(k.priv, k.Alg, kid)
	return c
}

// Public returns the public key (*rsa.PublicKey, *ecdsa.PublicKey,
// ed25519.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// PublicJWK returns the public key as a JWK object with kid, alg and use.
func (k *Key) PublicJWK() map[string]any {
	out := make(map[string]any, len(k.jwk))
	for n, v := range k.jwk {
		out[n] = v
	}
	return out
}

// PublicPEM returns the public key as PEM ("PUBLIC KEY", PKIX), the bytes an
// alg-confusion attack uses as an HMAC secret.
func (k *Key) PublicPEM() []byte {
	der, _ := x509.MarshalPKIXPublicKey(k.priv.Public())
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// PublicDER returns the public key as PKIX DER.
func (k *Key) PublicDER() []byte {
	der, _ := x509.MarshalPKIXPublicKey(k.priv.Public())
	return der
}

// CertificateDER returns a self-signed certificate for the key (for x5c).
func (k *Key) CertificateDER() ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "prism test key " + k.KID},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.priv.Public(), k.priv)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return der, nil
}

// Claims is a token's claim set.
type Claims map[string]any

// Claims returns good claims for sub: iss, aud, sub, iat and nbf now, exp
// now + TokenTTL, and the given grants as a space-separated scope.
func (i *Issuer) Claims(sub string, scope ...string) Claims {
	now := i.opts.Now()
	c := Claims{
		"iss": i.URL(),
		"aud": i.opts.Audience,
		"sub": sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(i.opts.TokenTTL).Unix(),
	}
	if len(scope) > 0 {
		c["scope"] = strings.Join(scope, " ")
	}
	return c
}

// MintOption changes how [Issuer.Mint] makes a token.
type MintOption func(*mint)

type mint struct {
	key        *Key
	secret     []byte
	alg        string
	header     map[string]any
	drop       []string
	rawHeader  []byte
	rawPayload []byte
	unsigned   bool
}

// WithKey signs with k (its alg and kid go in the header).
func WithKey(k *Key) MintOption { return func(m *mint) { m.key = k } }

// WithHMAC signs with an HMAC secret (alg HS256 unless WithAlg says
// otherwise), e.g. the issuer's public key PEM for an alg-confusion attack.
// The header keeps the signing key's kid unless WithHeader changes it.
func WithHMAC(secret []byte) MintOption {
	return func(m *mint) { m.secret = secret }
}

// WithAlg sets the header's alg and the signing algorithm.
func WithAlg(alg string) MintOption { return func(m *mint) { m.alg = alg } }

// WithHeader sets a protected header member (after alg and kid are set, so
// it can override them; the signature is still made with the key's alg
// unless WithAlg is given).
func WithHeader(name string, value any) MintOption {
	return func(m *mint) { m.header[name] = value }
}

// WithoutHeader removes a protected header member (e.g. "kid").
func WithoutHeader(name string) MintOption {
	return func(m *mint) { m.drop = append(m.drop, name) }
}

// WithRawHeader uses these exact header bytes (before base64url), for
// headers JSON encoding cannot produce, such as duplicate members.
func WithRawHeader(b []byte) MintOption { return func(m *mint) { m.rawHeader = b } }

// WithRawPayload uses these exact payload bytes (before base64url) instead
// of the claims, for payloads JSON encoding of a map cannot produce, such as
// duplicate members.
func WithRawPayload(b []byte) MintOption { return func(m *mint) { m.rawPayload = b } }

// Unsigned leaves the signature segment empty (use with WithAlg("none") or
// WithHeader("alg", "nOnE")).
func Unsigned() MintOption { return func(m *mint) { m.unsigned = true } }

// Mint encodes and signs a token: by default with the issuer's signing key,
// header {"alg", "kid", "typ": "JWT"}.
func (i *Issuer) Mint(c Claims, opts ...MintOption) (string, error) {
	m := &mint{key: i.Key(), header: map[string]any{}}
	for _, o := range opts {
		o(m)
	}
	alg := m.alg
	if alg == "" {
		if m.secret != nil {
			alg = "HS256"
		} else {
			alg = m.key.Alg
		}
	}
	hdr := map[string]any{"alg": alg, "kid": m.key.KID, "typ": "JWT"}
	for n, v := range m.header {
		hdr[n] = v
	}
	for _, n := range m.drop {
		delete(hdr, n)
	}
	hb := m.rawHeader
	if hb == nil {
		var err error
		if hb, err = json.Marshal(hdr); err != nil {
			return "", fmt.Errorf("encode header: %w", err)
		}
	}
	pb := m.rawPayload
	if pb == nil {
		var err error
		if pb, err = json.Marshal(c); err != nil {
			return "", fmt.Errorf("encode claims: %w", err)
		}
	}
	input := b64(hb) + "." + b64(pb)
	if m.unsigned {
		return input + ".", nil
	}
	var key any = m.secret
	if m.secret == nil {
		key = m.key.priv
	}
	sig, err := jwsbb.Sign(key, alg, []byte(input), nil)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return input + "." + b64(sig), nil
}

// MustMint is Mint that panics on error (errors here are test bugs).
func (i *Issuer) MustMint(c Claims, opts ...MintOption) string {
	t, err := i.Mint(c, opts...)
	if err != nil {
		panic(err)
	}
	return t
}

// StripSignature removes a token's signature, keeping the trailing dot.
func StripSignature(token string) string {
	if j := strings.LastIndexByte(token, '.'); j >= 0 {
		return token[:j+1]
	}
	return token
}

// TamperPayload re-encodes a token's claims after change, keeping its
// header and signature.
func TamperPayload(token string, change func(Claims)) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("tamper payload: not a compact JWS")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("tamper payload: %w", err)
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return "", fmt.Errorf("tamper payload: %w", err)
	}
	change(c)
	if pb, err = json.Marshal(c); err != nil {
		return "", fmt.Errorf("tamper payload: %w", err)
	}
	return parts[0] + "." + b64(pb) + "." + parts[2], nil
}

// Pad adds a claim of n filler bytes, to make oversized tokens.
func (c Claims) Pad(n int) Claims {
	c["pad"] = strings.Repeat("x", n)
	return c
}

// With returns c with name set to v (nil removes it).
func (c Claims) With(name string, v any) Claims {
	if v == nil {
		delete(c, name)
	} else {
		c[name] = v
	}
	return c
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// WaitJWKSFetches waits until at least n JWKS requests arrived or ctx ends.
func (i *Issuer) WaitJWKSFetches(ctx context.Context, n int) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for i.JWKSFetches() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d JWKS fetches (got %d): %w", n, i.JWKSFetches(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
