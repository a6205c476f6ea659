package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/prism-suite/prism/reference/internal/authmutant"
)

// Authorizer verifies bearer tokens against one OIDC issuer and authorises
// calls per namespace. It is safe for concurrent use. Create it with [New]
// and release it with [Authorizer.Close].
type Authorizer struct {
	cfg   Config
	c     *compiled
	keys  *keySource
	cache *lru.Cache[[sha256.Size]byte, *cached]
	now   func() time.Time
	log   *slog.Logger

	hits, misses atomic.Uint64
}

// compiled is the config turned into what verification needs.
type compiled struct {
	algs     map[string]jwa.SignatureAlgorithm
	hmacKID  string
	hmacKey  []byte
	pattern  *grantPattern
	mapping  map[string]grants
	claim    string
	skew     time.Duration
	maxBytes int
}

// cached is a verified token kept until it expires.
type cached struct {
	p     *Principal
	exp   time.Time
	kid   string
	thumb string // "" for an HMAC key
}

// Principal is who a verified token speaks for, and what it grants. Calls
// with the same token share one Principal: treat it as read-only.
type Principal struct {
	// Subject is the token's sub claim.
	Subject string
	// Issuer is the token's iss claim.
	Issuer string
	// ExpiresAt is the token's exp claim.
	ExpiresAt time.Time
	// KeyID is the kid of the key that signed the token.
	KeyID string

	grants grants
	// payload is the verified token's claims set, as signed (for Claim).
	payload []byte
}

// Claim returns the value of the token's claim name (JSON-decoded: a
// string, a number, a bool, []any or map[string]any), and whether the
// token has it. The admin API reads its role claim with it.
func (p *Principal) Claim(name string) (any, bool) {
	var m map[string]any
	if err := json.Unmarshal(p.payload, &m); err != nil {
		return nil, false
	}
	v, ok := m[name]
	return v, ok
}

// Allows reports whether the principal has access a on namespace.
func (p *Principal) Allows(namespace string, a Access) bool { return p.grants.allows(namespace, a) }

// Grants lists the principal's grants, sorted by namespace.
func (p *Principal) Grants() []Grant {
	out := make([]Grant, 0, len(p.grants))
	for _, ns := range sortedKeys(p.grants) {
		out = append(out, Grant{Namespace: ns, Access: p.grants[ns]})
	}
	return out
}

// Option configures [New].
type Option func(*options)

type options struct {
	log    *slog.Logger
	now    func() time.Time
	client *http.Client
}

// WithLogger sets the logger (default slog.Default()). Token problems are
// logged at debug level with their reason, never with the token.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the clock used for exp, nbf, iat, the cache and the JWKS
// refetch interval (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithHTTPClient sets the client for discovery and JWKS requests (for
// example one trusting a private CA). Its redirects and timeout are the
// caller's; the default client has HTTPTimeout and follows redirects only to
// https (or loopback http).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// New validates cfg, reads the HMAC secret when one is configured, and
// returns an Authorizer. It makes no request: the issuer's keys are fetched
// on the first token (or by [Authorizer.Refresh]).
func New(cfg Config, opts ...Option) (*Authorizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: slog.Default(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.client == nil {
		o.client = newHTTPClient(cfg.HTTPTimeout)
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	c := &compiled{algs: map[string]jwa.SignatureAlgorithm{}, mapping: map[string]grants{}, claim: cfg.Grants.Claim,
		skew: cfg.ClockSkew, maxBytes: cfg.MaxTokenBytes}
	for _, a := range cfg.Algorithms {
		alg, ok := jwa.LookupSignatureAlgorithm(a)
		if !ok {
			return nil, fmt.Errorf("algorithms: %q is not known to the JWT library", a)
		}
		c.algs[a] = alg
	}
	if cfg.HMAC != nil {
		key, err := cfg.HMAC.secret()
		if err != nil {
			return nil, err
		}
		c.hmacKID, c.hmacKey = cfg.HMAC.KeyID, key
		cfg.HMAC = &HMACConfig{KeyID: cfg.HMAC.KeyID, SecretEnv: cfg.HMAC.SecretEnv, SecretFile: cfg.HMAC.SecretFile}
	}
	if cfg.Grants.Pattern != "" {
		c.pattern, _ = compilePattern(cfg.Grants.Pattern)
	}
	for value, ng := range cfg.Grants.Mapping {
		g := grants{}
		for _, ns := range ng.Read {
			g[ns] |= Read
		}
		for _, ns := range ng.Write {
			g[ns] |= Write
		}
		c.mapping[value] = g
	}
	a := &Authorizer{cfg: cfg, c: c, now: o.now, log: o.log}
	a.keys = newKeySource(cfg, o.client, o.log, o.now)
	if cfg.CacheSize > 0 {
		var err error
		if a.cache, err = lru.New[[sha256.Size]byte, *cached](cfg.CacheSize); err != nil {
			return nil, fmt.Errorf("create token cache: %w", err)
		}
	}
	return a, nil
}

// secret reads the HMAC secret; errors name the field, never the value.
func (h *HMACConfig) secret() ([]byte, error) {
	var b []byte
	switch {
	case len(h.Secret) > 0:
		b = slices.Clone(h.Secret)
	case h.SecretEnv != "":
		v, ok := os.LookupEnv(h.SecretEnv)
		if !ok {
			return nil, fmt.Errorf("hmac.secret_env: environment variable %s is not set", h.SecretEnv)
		}
		b = []byte(v)
	default:
		f, err := os.ReadFile(h.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("hmac.secret_file: %w", err)
		}
		b = bytes.TrimRight(f, "\r\n")
	}
	if len(b) < MinHMACSecretBytes {
		return nil, fmt.Errorf("hmac: the secret must be at least %d bytes, it has %d", MinHMACSecretBytes, len(b))
	}
	return b, nil
}

// Config returns the config the Authorizer runs with (without the HMAC
// secret). Its Grants.Mapping is the caller's map: do not change it.
func (a *Authorizer) Config() Config { return a.cfg }

// Close stops any JWKS fetch in progress. Verify keeps working with the
// keys it has.
func (a *Authorizer) Close() { a.keys.close() }

// Refresh fetches the issuer's keys now (discovery, then the JWKS), joining
// a fetch already in progress. The proxy calls it at start to say early when
// the issuer cannot be reached; it is not needed otherwise.
func (a *Authorizer) Refresh(ctx context.Context) error {
	if err := a.keys.refresh(ctx, true, true); err != nil {
		return fmt.Errorf("refresh keys: %w", err)
	}
	return nil
}

// Stats are counters for metrics and tests.
type Stats struct {
	// CacheHits and CacheMisses count Verify calls answered from the token
	// cache and those that verified the token.
	CacheHits, CacheMisses uint64
	// JWKSFetches counts key set fetches started (each may include a
	// discovery request); JWKSFailures those that failed; Discoveries the
	// discovery requests.
	JWKSFetches, JWKSFailures, Discoveries uint64
}

// Stats returns the counters.
func (a *Authorizer) Stats() Stats {
	return Stats{CacheHits: a.hits.Load(), CacheMisses: a.misses.Load(), JWKSFetches: a.keys.fetches.Load(),
		JWKSFailures: a.keys.failures.Load(), Discoveries: a.keys.discoveries.Load()}
}

// Authorize verifies token and checks that it grants access on namespace.
// Errors are [*Error]: ErrUnauthenticated for any token problem (generic
// message), ErrPermissionDenied for a valid token without the grant (naming
// namespace and access), ErrUnavailable while the issuer's keys were never
// fetched; or ctx's error when ctx ends while keys are being fetched.
func (a *Authorizer) Authorize(ctx context.Context, token, namespace string, access Access) (*Principal, error) {
	p, err := a.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	if !p.Allows(namespace, access) {
		return p, &Error{Kind: ErrPermissionDenied, Namespace: namespace, Access: access, Subject: p.Subject,
			Reason: "grants " + grantsText(p.Grants())}
	}
	return p, nil
}

// Verify checks a token (without the "Bearer " prefix) and returns its
// principal. A token verified before is answered from the cache until it
// expires, as long as the key that signed it is still published.
func (a *Authorizer) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, unauthenticated("no token")
	}
	if len(token) > a.c.maxBytes {
		return nil, unauthenticated("token of %d bytes is over max_token_bytes %d", len(token), a.c.maxBytes)
	}
	now := a.now()
	var h [sha256.Size]byte
	if a.cache != nil {
		h = sha256.Sum256([]byte(token))
		if e, ok := a.cache.Get(h); ok {
			fresh := now.Before(e.exp) || (authmutant.Compiled && authmutant.Active() == authmutant.CachePastExpiry)
			if fresh && (e.thumb == "" || a.keyStillPublished(e)) {
				a.hits.Add(1)
				a.keys.maybeRefreshStale()
				return e.p, nil
			}
			a.cache.Remove(h)
		}
	}
	a.misses.Add(1)
	e, err := a.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if a.cache != nil {
		a.cache.Add(h, e)
	}
	return e.p, nil
}

func (a *Authorizer) keyStillPublished(e *cached) bool {
	s := a.keys.current()
	return s != nil && s.has(e.kid, e.thumb)
}

// header is the JWS protected header fields verification looks at.
type header struct {
	alg, kid string
}

// verify runs every check on a token not in the cache.
func (a *Authorizer) verify(ctx context.Context, token string, now time.Time) (*cached, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, unauthenticated("not a compact JWS: %d segments", len(parts))
	}
	if parts[0] == "" || parts[1] == "" {
		return nil, unauthenticated("empty header or payload")
	}
	hdr, err := a.checkHeader(parts[0])
	if err != nil {
		return nil, err
	}
	if parts[2] == "" {
		return nil, unauthenticated("no signature")
	}
	alg := a.c.algs[hdr.alg]

	var candidates []any
	var thumbs []string
	if algorithms[hdr.alg] == famHMAC {
		if hdr.kid != a.c.hmacKID {
			return nil, unauthenticated("%s token with kid %s, not the configured hmac.kid", hdr.alg, quote(hdr.kid))
		}
		candidates, thumbs = []any{a.c.hmacKey}, []string{""}
	} else {
		set, err := a.keys.ensure(ctx)
		if err != nil {
			return nil, err
		}
		fit, known := set.lookup(hdr.kid, hdr.alg)
		if !known {
			if err := a.keys.refresh(ctx, true, false); err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			set = a.keys.current()
			fit, known = set.lookup(hdr.kid, hdr.alg)
		}
		if !known && authmutant.Compiled && authmutant.Active() == authmutant.KidAnyKey {
			fit, known = set.fitting(hdr.alg), true
		}
		if !known {
			return nil, unauthenticated("unknown kid %s", quote(hdr.kid))
		}
		if len(fit) == 0 {
			return nil, unauthenticated("kid %s names no key usable with %s", quote(hdr.kid), hdr.alg)
		}
		for _, k := range fit {
			candidates, thumbs = append(candidates, k.raw), append(thumbs, k.thumb)
		}
	}

	var payload []byte
	thumb := ""
	for i, key := range candidates {
		if payload, err = jws.VerifyCompactFast(key, []byte(token), alg); err == nil {
			thumb = thumbs[i]
			break
		}
	}
	if err != nil {
		return nil, unauthenticated("signature: %v", err)
	}

	lenient := authmutant.Compiled && authmutant.Active() == authmutant.LenientClaims
	if err := a.checkClaims(payload); err != nil && !lenient {
		return nil, err
	}
	tok := jwt.New()
	if err := json.Unmarshal(payload, tok); err != nil {
		return nil, unauthenticated("claims: %v", err)
	}
	exp, ok := tok.Expiration()
	if !ok {
		return nil, unauthenticated("no exp claim")
	}
	iatSkew := a.c.skew
	if authmutant.Compiled && authmutant.Active() == authmutant.SkewTwice {
		iatSkew *= 2
	}
	if iat, ok := tok.IssuedAt(); ok && iat.After(now.Add(iatSkew)) {
		return nil, unauthenticated("iat %v is in the future beyond clock_skew", iat.UTC())
	}
	opts := []jwt.ValidateOption{
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(a.c.skew),
		jwt.WithIssuer(a.cfg.Issuer),
		jwt.WithAudience(a.cfg.Audience),
	}
	if d := authmutant.Active(); authmutant.Compiled && d != "" { // test-only defects: never in the default build (see authmutant)
		opts = a.mutantValidation(d, tok, now, exp)
	}
	if err = jwt.Validate(tok, opts...); err != nil {
		return nil, unauthenticated("claims: %v", err)
	}

	if maxLife := a.cfg.MaxTokenLifetime; maxLife > 0 && !lenient {
		if iat, ok := tok.IssuedAt(); ok && exp.Sub(iat) > maxLife {
			return nil, unauthenticated("lifetime exp - iat of %v is over max_token_lifetime %v", exp.Sub(iat), maxLife)
		}
		if exp.Sub(now) > maxLife+a.c.skew {
			return nil, unauthenticated("exp %v is more than max_token_lifetime %v away", exp.UTC(), maxLife)
		}
	}

	p := &Principal{ExpiresAt: exp, KeyID: hdr.kid, payload: payload}
	p.Subject, _ = tok.Subject()
	p.Issuer, _ = tok.Issuer()
	var gv any
	if err := tok.Get(a.c.claim, &gv); err == nil {
		p.grants = a.c.grantsFrom(gv)
	} else {
		p.grants = grants{}
	}
	return &cached{p: p, exp: exp, kid: hdr.kid, thumb: thumb}, nil
}

// checkClaims applies the claim rules jwx leaves to its caller, on the
// verified payload as it was signed: a JSON object without duplicate
// members (parsers resolve them differently); exp, nbf and iat, when
// present, JSON numbers (RFC 7519 NumericDate; jwx also takes "123" and
// null); sub a non-empty string (unless allow_missing_subject, and then a
// string when present); aud a string or an array of strings (which one must
// equal the audience is jwx's check).
func (a *Authorizer) checkClaims(payload []byte) error {
	members, err := decodeObject(payload)
	if err != nil {
		return unauthenticated("claims: %v", err)
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		if raw, ok := members[name]; ok && !isJSONNumber(raw) {
			return unauthenticated("claims: %s is not a JSON number (a NumericDate)", name)
		}
	}
	sub, hasSub := "", false
	if raw, ok := members["sub"]; ok {
		if sub, hasSub = jsonString(raw); !hasSub {
			return unauthenticated("claims: sub is not a string")
		}
	}
	if sub == "" && !a.cfg.AllowMissingSubject {
		return unauthenticated("claims: sub is missing or empty")
	}
	if raw, ok := members["aud"]; ok {
		_, isString := jsonString(raw)
		var list []json.RawMessage
		if !isString {
			if json.Unmarshal(raw, &list) != nil || list == nil {
				return unauthenticated("claims: aud is neither a string nor an array of strings")
			}
			for _, v := range list {
				if _, ok := jsonString(v); !ok {
					return unauthenticated("claims: aud is neither a string nor an array of strings")
				}
			}
		}
	}
	return nil
}

// isJSONNumber reports whether raw is a JSON number (not a string holding
// one, not null).
func isJSONNumber(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	var f float64
	return len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) && json.Unmarshal(b, &f) == nil
}

// jsonString decodes raw when it is a JSON string (not null).
func jsonString(raw json.RawMessage) (string, bool) {
	b := bytes.TrimSpace(raw)
	var s string
	if len(b) == 0 || b[0] != '"' || json.Unmarshal(b, &s) != nil {
		return "", false
	}
	return s, true
}

// checkHeader decodes the protected header and applies the header rules:
// alg in the allow-list (never none, in any case), kid present, no crit, no
// b64, no duplicate members. jku, x5u, jwk and x5c are ignored: keys come
// only from the issuer's JWKS (or the configured HMAC secret).
func (a *Authorizer) checkHeader(seg string) (header, error) {
	var h header
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return h, unauthenticated("header: %v", err)
	}
	members, err := decodeObject(raw)
	if err != nil {
		return h, unauthenticated("header: %v", err)
	}
	algRaw, ok := members["alg"]
	if !ok || json.Unmarshal(algRaw, &h.alg) != nil {
		return h, unauthenticated("header: alg is missing or not a string")
	}
	if strings.EqualFold(h.alg, "none") {
		return h, unauthenticated("alg %s: unsigned tokens are never accepted", quote(h.alg))
	}
	if _, ok := a.c.algs[h.alg]; !ok {
		return h, unauthenticated("alg %s is not in the allow-list", quote(h.alg))
	}
	if _, ok := members["crit"]; ok {
		return h, unauthenticated("header has crit: no critical extension is supported")
	}
	if _, ok := members["b64"]; ok {
		return h, unauthenticated("header has b64: unencoded payloads are not JWTs")
	}
	kidRaw, ok := members["kid"]
	if !ok || json.Unmarshal(kidRaw, &h.kid) != nil || h.kid == "" {
		return h, unauthenticated("header: kid is missing, empty or not a string")
	}
	return h, nil
}

// decodeObject decodes a JSON object into its members, refusing duplicate
// names (which parsers resolve differently) and trailing data.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("member %s appears twice", quote(name))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

type principalKey struct{}

// ContextWithPrincipal returns ctx carrying p.
func ContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the principal the interceptor put in a
// handler's context.
func PrincipalFromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}

// mutantValidation returns the claim validation options with a test-only
// defect applied: the audience or issuer check loosened or dropped, the
// clock moved back before an expired token's exp, the leeway doubled, or
// nbf removed from the token.
func (a *Authorizer) mutantValidation(d authmutant.Defect, tok jwt.Token, now, exp time.Time) []jwt.ValidateOption {
	skew, iss, aud := a.c.skew, a.cfg.Issuer, a.cfg.Audience
	check := true
	switch d {
	case authmutant.SkipAudience:
		check = false
	case authmutant.IgnoreExpiry:
		if !now.Before(exp) {
			now = exp.Add(-time.Second)
		}
	case authmutant.SkewTwice:
		skew *= 2
	case authmutant.IgnoreNotBefore:
		_ = tok.Remove("nbf")
	case authmutant.IssPrefix:
		if v, ok := tok.Issuer(); ok && strings.HasPrefix(strings.ToLower(v), strings.ToLower(iss)) {
			iss = v
		}
	case authmutant.AudSubstring:
		vs, _ := tok.Audience()
		for _, v := range vs {
			if strings.Contains(v, aud) {
				aud = v
			}
		}
	}
	opts := []jwt.ValidateOption{
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(skew),
		jwt.WithIssuer(iss),
	}
	if check {
		opts = append(opts, jwt.WithAudience(aud))
	}
	return opts
}
