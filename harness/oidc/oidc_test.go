package oidc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/prism-suite/prism/harness/oidc"
)

func start(t *testing.T) *oidc.Issuer {
	t.Helper()
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatalf("start issuer: %v", err)
	}
	t.Cleanup(iss.Close)
	return iss
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("get %s: %v", url, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestServesDiscoveryAndJWKSOnLoopback(t *testing.T) {
	iss := start(t)
	if !strings.HasPrefix(iss.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL = %s, want http://127.0.0.1:port", iss.URL())
	}
	code, doc := getJSON(t, iss.URL()+"/.well-known/openid-configuration")
	if code != 200 || doc["issuer"] != iss.URL() || doc["jwks_uri"] != iss.JWKSURL() {
		t.Fatalf("discovery: got %d %v", code, doc)
	}
	resp, err := http.Get(iss.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	set, err := jwk.Parse(raw)
	if err != nil {
		t.Fatalf("parse JWKS: %v", err)
	}
	k, ok := set.LookupKeyID("key-1")
	if !ok || set.Len() != 1 {
		t.Fatalf("JWKS: got %d keys, key-1 found %v; want just key-1", set.Len(), ok)
	}
	if priv, _ := jwk.IsPrivateKey(k); priv {
		t.Fatal("JWKS publishes a private key")
	}
	if iss.JWKSFetches() != 1 || iss.DiscoveryFetches() != 1 {
		t.Fatalf("counts: jwks %d discovery %d, want 1 and 1", iss.JWKSFetches(), iss.DiscoveryFetches())
	}
}

func TestMintedTokenVerifiesWithThePublishedKey(t *testing.T) {
	iss := start(t)
	tok := iss.MustMint(iss.Claims("alice", "prism:orders:read"))
	parsed, err := jwt.ParseString(tok, jwt.WithKey(jwa.RS256(), iss.Key().Public()),
		jwt.WithIssuer(iss.URL()), jwt.WithAudience(iss.Audience()))
	if err != nil {
		t.Fatalf("parse minted token: %v", err)
	}
	if sub, _ := parsed.Subject(); sub != "alice" {
		t.Fatalf("sub = %q, want alice", sub)
	}
	for _, mutated := range []string{
		oidc.StripSignature(tok),
		mustTamper(t, tok),
	} {
		if _, err := jwt.ParseString(mutated, jwt.WithKey(jwa.RS256(), iss.Key().Public())); err == nil {
			t.Errorf("a stripped or tampered token verified")
		}
	}
}

func mustTamper(t *testing.T, tok string) string {
	t.Helper()
	out, err := oidc.TamperPayload(tok, func(c oidc.Claims) { c["sub"] = "root" })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMintWritesAnyHeader(t *testing.T) {
	iss := start(t)
	tok := iss.MustMint(iss.Claims("x"), oidc.WithHeader("alg", "nOnE"), oidc.WithoutHeader("kid"),
		oidc.WithHeader("crit", []string{"exp"}), oidc.Unsigned())
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[2] != "" {
		t.Fatalf("unsigned token %q: want 3 segments, the last empty", tok)
	}
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]any
	_ = json.Unmarshal(hb, &h)
	if h["alg"] != "nOnE" || h["kid"] != nil || h["crit"] == nil {
		t.Fatalf("header = %v", h)
	}
	raw := iss.MustMint(iss.Claims("x"), oidc.WithRawHeader([]byte(`{"alg":"RS256","alg":"none","kid":"key-1"}`)))
	hb, _ = base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if string(hb) != `{"alg":"RS256","alg":"none","kid":"key-1"}` {
		t.Fatalf("raw header = %s", hb)
	}
}

func TestRotateAndUnpublish(t *testing.T) {
	iss := start(t)
	old := iss.Key()
	k2, err := iss.Rotate("key-2")
	if err != nil {
		t.Fatal(err)
	}
	if iss.Key() != k2 {
		t.Fatal("Rotate did not make the new key the signing key")
	}
	iss.Unpublish(old.KID)
	_, m := getJSON(t, iss.JWKSURL())
	keys := m["keys"].([]any)
	if len(keys) != 1 || keys[0].(map[string]any)["kid"] != "key-2" {
		t.Fatalf("JWKS after rotation = %v, want only key-2", m)
	}
}

func TestFailModes(t *testing.T) {
	iss := start(t)
	iss.FailJWKS(oidc.Status500)
	if code, _ := getJSON(t, iss.JWKSURL()); code != 500 {
		t.Fatalf("Status500: got %d", code)
	}
	iss.FailJWKS(oidc.Hang)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, iss.JWKSURL(), nil)
	start := time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("Hang: the request was answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Hang outlived the client's deadline: %v", d)
	}
	iss.FailJWKS(oidc.Serve)
	if code, _ := getJSON(t, iss.JWKSURL()); code != 200 {
		t.Fatalf("Serve: got %d", code)
	}
	if n := iss.JWKSFetches(); n != 3 {
		t.Fatalf("JWKSFetches = %d, want 3", n)
	}
}

func TestHMACWithPublicKeyPEM(t *testing.T) {
	iss := start(t)
	pemKey := iss.Key().PublicPEM()
	tok := iss.MustMint(iss.Claims("mallory"), oidc.WithHMAC(pemKey))
	if _, err := jwt.ParseString(tok, jwt.WithKey(jwa.HS256(), pemKey)); err != nil {
		t.Fatalf("the forged token is not a valid HS256 token over the PEM bytes: %v", err)
	}
}
