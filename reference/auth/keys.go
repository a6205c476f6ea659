package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// keyFamily is the kind of key an algorithm verifies with.
type keyFamily uint8

const (
	famRSA keyFamily = iota + 1
	famP256
	famP384
	famP521
	famEd25519
	famHMAC
)

// MinRSABits is the smallest RSA key taken from a JWKS.
const MinRSABits = 2048

// maxDocBytes caps a discovery document or JWKS.
const maxDocBytes = 1 << 20

// pubKey is one usable verification key from the JWKS.
type pubKey struct {
	kid   string
	alg   string // the JWK's alg parameter, "" when absent
	fam   keyFamily
	raw   any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	thumb string // RFC 7638 thumbprint: the key's identity across fetches
}

// keySet is one fetched JWKS.
type keySet struct {
	byKID   map[string][]*pubKey
	fetched time.Time
}

// lookup returns the keys with kid that can verify alg, and whether any key
// has that kid at all.
func (s *keySet) lookup(kid, alg string) (fit []*pubKey, known bool) {
	keys := s.byKID[kid]
	fam := algorithms[alg]
	for _, k := range keys {
		if k.fam == fam && (k.alg == "" || k.alg == alg) {
			fit = append(fit, k)
		}
	}
	return fit, len(keys) > 0
}

// fitting returns every key that can verify alg, whatever its kid (for
// the test-only defect kid-any-key).
func (s *keySet) fitting(alg string) []*pubKey {
	var out []*pubKey
	for kid := range s.byKID {
		fit, _ := s.lookup(kid, alg)
		out = append(out, fit...)
	}
	return out
}

// has reports whether the key kid with thumbprint thumb is still published.
func (s *keySet) has(kid, thumb string) bool {
	for _, k := range s.byKID[kid] {
		if k.thumb == thumb {
			return true
		}
	}
	return false
}

// keySource fetches the issuer's JWKS (after OIDC discovery) and refetches
// it at most once per refetch interval, whatever asks for it.
type keySource struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	base   context.Context
	cancel context.CancelFunc

	set atomic.Pointer[keySet]

	mu          sync.Mutex
	jwksURI     string // discovered (or configured)
	lastAttempt time.Time
	inflight    *flight
	lastErr     error

	fetches, failures, discoveries atomic.Uint64
}

// flight is one fetch in progress; done closes when it ends.
type flight struct {
	done chan struct{}
	err  error
}

func newKeySource(cfg Config, client *http.Client, log *slog.Logger, now func() time.Time) *keySource {
	ks := &keySource{cfg: cfg, client: client, log: log, now: now, jwksURI: cfg.JWKSURI}
	ks.base, ks.cancel = context.WithCancel(context.Background())
	return ks
}

func (ks *keySource) close() { ks.cancel() }

// current returns the last fetched key set, or nil.
func (ks *keySource) current() *keySet { return ks.set.Load() }

// refresh starts a fetch unless one is in flight (then it joins it) or the
// last one started less than the refetch interval ago (then it does nothing
// unless force). With wait it waits for the fetch or ctx; it returns the
// fetch's error, or nil when it did not wait or did not fetch.
func (ks *keySource) refresh(ctx context.Context, wait, force bool) error {
	ks.mu.Lock()
	f := ks.inflight
	if f == nil {
		now := ks.now()
		if !force && !ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < ks.cfg.JWKSRefetchInterval {
			ks.mu.Unlock()
			return nil
		}
		f = &flight{done: make(chan struct{})}
		ks.inflight, ks.lastAttempt = f, now
		go ks.run(f)
	}
	ks.mu.Unlock()
	if !wait {
		return nil
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maybeRefreshStale refreshes in the background when the key set is older
// than jwks_max_age.
func (ks *keySource) maybeRefreshStale() {
	s := ks.set.Load()
	if s != nil && ks.now().Sub(s.fetched) > ks.cfg.JWKSMaxAge {
		_ = ks.refresh(context.Background(), false, false)
	}
}

// ensure returns the key set, fetching it first when there is none yet.
func (ks *keySource) ensure(ctx context.Context) (*keySet, error) {
	if s := ks.set.Load(); s != nil {
		ks.maybeRefreshStale()
		return s, nil
	}
	if err := ks.refresh(ctx, true, false); err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if s := ks.set.Load(); s != nil {
		return s, nil
	}
	ks.mu.Lock()
	lastErr := ks.lastErr
	ks.mu.Unlock()
	return nil, &Error{Kind: ErrUnavailable, Reason: fmt.Sprintf("no key set yet: %v", lastErr)}
}

func (ks *keySource) run(f *flight) {
	s, err := ks.fetch()
	ks.mu.Lock()
	if err == nil {
		ks.set.Store(s)
		ks.lastErr = nil
	} else {
		ks.lastErr = err
		ks.jwksURI = ks.cfg.JWKSURI // discover again next time
	}
	ks.inflight = nil
	f.err = err
	ks.mu.Unlock()
	close(f.done)
}

// fetch discovers the jwks_uri when needed and fetches the JWKS.
func (ks *keySource) fetch() (*keySet, error) {
	ks.fetches.Add(1)
	ks.mu.Lock()
	uri := ks.jwksURI
	ks.mu.Unlock()
	if uri == "" {
		var err error
		if uri, err = ks.discover(); err != nil {
			ks.failures.Add(1)
			ks.log.Warn("auth: OIDC discovery failed; keeping the previous keys", "issuer", ks.cfg.Issuer, "error", err)
			return nil, err
		}
		ks.mu.Lock()
		ks.jwksURI = uri
		ks.mu.Unlock()
	}
	s, skipped, err := ks.fetchJWKS(uri)
	if err != nil {
		ks.failures.Add(1)
		ks.log.Warn("auth: JWKS fetch failed; keeping the previous keys", "jwks_uri", uri, "error", err)
		return nil, err
	}
	n := 0
	for _, keys := range s.byKID {
		n += len(keys)
	}
	ks.log.Debug("auth: fetched JWKS", "jwks_uri", uri, "keys", n, "skipped", skipped)
	if len(skipped) > 0 {
		ks.log.Warn("auth: JWKS has keys that will never verify a token", "jwks_uri", uri, "skipped", skipped)
	}
	return s, nil
}

// discover reads <issuer>/.well-known/openid-configuration.
func (ks *keySource) discover() (string, error) {
	ks.discoveries.Add(1)
	u := strings.TrimSuffix(ks.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	body, err := ks.get(u)
	if err != nil {
		return "", fmt.Errorf("discover issuer: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discover issuer: decode %s: %w", u, err)
	}
	if doc.Issuer != ks.cfg.Issuer {
		return "", fmt.Errorf("discover issuer: the document names issuer %q, not %q", doc.Issuer, ks.cfg.Issuer)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("discover issuer: the document has no jwks_uri")
	}
	if err := checkURL(doc.JWKSURI, true); err != nil {
		return "", fmt.Errorf("discover issuer: jwks_uri: %w", err)
	}
	return doc.JWKSURI, nil
}

// fetchJWKS fetches and parses the key set, keeping the keys a token could
// be verified with and naming the others.
func (ks *keySource) fetchJWKS(uri string) (*keySet, []string, error) {
	body, err := ks.get(uri)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	// Keys are parsed one by one, so one key the library refuses (a weak
	// RSA key, an unknown kty) does not take the others down with it.
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, nil, fmt.Errorf("parse JWKS: no keys member")
	}
	out := &keySet{byKID: map[string][]*pubKey{}, fetched: ks.now()}
	var skipped []string
	for i, raw := range doc.Keys {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		pk, why := usableKey(k)
		if pk == nil {
			kid, _ := k.KeyID()
			skipped = append(skipped, fmt.Sprintf("keys[%d] %s: %s", i, quote(kid), why))
			continue
		}
		out.byKID[pk.kid] = append(out.byKID[pk.kid], pk)
	}
	return out, skipped, nil
}

// usableKey turns a JWK into a verification key, or says why it is not one.
// Symmetric keys are never taken from a JWKS; private keys are reduced to
// their public half.
func usableKey(k jwk.Key) (*pubKey, string) {
	kid, _ := k.KeyID()
	if kid == "" {
		return nil, "no kid"
	}
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return nil, fmt.Sprintf("use is %q, not sig", use)
	}
	raw, err := jwk.PublicRawKeyOf(k)
	if err != nil {
		return nil, fmt.Sprintf("kty %s is not a public key type", k.KeyType())
	}
	pk := &pubKey{kid: kid, raw: raw}
	if a, ok := k.Algorithm(); ok {
		pk.alg = a.String()
	}
	switch r := raw.(type) {
	case *rsa.PublicKey:
		if r.N.BitLen() < MinRSABits {
			return nil, fmt.Sprintf("RSA key of %d bits, under %d", r.N.BitLen(), MinRSABits)
		}
		pk.fam = famRSA
	case *ecdsa.PublicKey:
		switch r.Curve {
		case elliptic.P256():
			pk.fam = famP256
		case elliptic.P384():
			pk.fam = famP384
		case elliptic.P521():
			pk.fam = famP521
		default:
			return nil, "unsupported curve"
		}
	case ed25519.PublicKey:
		pk.fam = famEd25519
	default:
		return nil, fmt.Sprintf("kty %s cannot verify an allowed algorithm", k.KeyType())
	}
	if pk.alg != "" && algorithms[pk.alg] != pk.fam {
		return nil, fmt.Sprintf("alg %s does not fit the key", pk.alg)
	}
	pub, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Sprintf("import: %v", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Sprintf("thumbprint: %v", err)
	}
	pk.thumb = base64.RawURLEncoding.EncodeToString(tp)
	return pk, ""
}

// get fetches a URL with the request timeout and size cap.
func (ks *keySource) get(u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ks.base, ks.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocBytes))
		return nil, fmt.Errorf("get %s: status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if len(body) > maxDocBytes {
		return nil, fmt.Errorf("read %s: larger than %d bytes", u, maxDocBytes)
	}
	return body, nil
}

// newHTTPClient returns a client whose redirects stay on https (or loopback
// http) and that uses no proxy for loopback hosts.
func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return checkURL(req.URL.String(), true)
		},
	}
}
