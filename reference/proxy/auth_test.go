package proxy_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/oidc"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/auth"
	"github.com/prism-suite/prism/reference/proxy"
)

// syncBuffer is a bytes.Buffer safe for the proxy's log writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, auth.AuthorizationKey, "Bearer "+token)
}

func TestAuthInFrontOfRouting(t *testing.T) {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	cfg := testConfig(kvNamespace("orders", ""), kvNamespace("events", "events"))
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
	cfg.Auth = &ac
	p, err := proxy.New(cfg, proxy.WithPluginStderr(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	conn := dial(t, p.Addr())
	defer conn.Close()
	kv := keyvaluev1.NewKeyValueClient(conn)
	rw := iss.MustMint(iss.Claims("alice", "prism:orders:read", "prism:orders:write"))
	ro := iss.MustMint(iss.Claims("bob", "prism:orders:read"))

	c, done := nsCtx("orders")
	defer done()
	_, err = kv.Get(c, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get without a token", err, codes.Unauthenticated)
	_, err = kv.Get(bearer(c, rw+"x"), &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get with a forged token", err, codes.Unauthenticated)

	var trailer metadata.MD
	_, err = kv.Set(bearer(c, rw), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}, grpc.Trailer(&trailer))
	wantCode(t, "Set with a read-write token", err, codes.OK)
	if v := trailer.Get(sdk.AuthorizationSeenKey); len(v) > 0 {
		t.Errorf("the plugin saw the authorization metadata (trailer %s=%v)", sdk.AuthorizationSeenKey, v)
	}
	_, err = kv.Get(bearer(c, ro), &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get with a read token", err, codes.OK)
	_, err = kv.Set(bearer(c, ro), &keyvaluev1.SetRequest{Key: "k", Value: []byte("w")})
	wantCode(t, "Set with a read token", err, codes.PermissionDenied)

	e, done2 := nsCtx("events")
	defer done2()
	_, err = kv.Get(bearer(e, rw), &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get in another namespace", err, codes.PermissionDenied)

	// Health needs no token.
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "orders"}); err != nil {
		t.Errorf("health without a token: %v", err)
	}
	m := httpGet(t, "http://"+p.MetricsAddr()+"/metrics")
	for _, want := range []string{`prism_proxy_auth_refused_total{code="Unauthenticated"} 2`, `prism_proxy_auth_refused_total{code="PermissionDenied"} 2`,
		"prism_proxy_auth_token_cache_hits_total", "prism_proxy_auth_jwks_fetches_total 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestAuthOffIsLoud(t *testing.T) {
	var logs syncBuffer
	cfg := testConfig(kvNamespace("orders", ""))
	p, err := proxy.New(cfg, proxy.WithPluginStderr(io.Discard), proxy.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"auth is OFF`) {
		t.Errorf("no auth-off warning at start; log:\n%s", logs.String())
	}
	// Even with auth off, a token a client sends never reaches a plugin.
	conn := dial(t, p.Addr())
	defer conn.Close()
	c, done := nsCtx("orders")
	defer done()
	var trailer metadata.MD
	_, err = keyvaluev1.NewKeyValueClient(conn).Set(bearer(c, "t"), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}, grpc.Trailer(&trailer))
	wantCode(t, "Set", err, codes.OK)
	if v := trailer.Get(sdk.AuthorizationSeenKey); len(v) > 0 {
		t.Errorf("the plugin saw the authorization metadata with auth off")
	}
}

func TestAuthConfigErrorsArePrefixed(t *testing.T) {
	yml := "namespaces: [{name: a, pattern: keyvalue, plugin: {binary: " + memstore + "}}]\n" +
		"auth: {issuer: 'http://example.com', algorithms: [none], grants: {claimz: x}}\n"
	_, err := proxy.Parse([]byte(yml), "")
	if err == nil || !strings.Contains(err.Error(), "claimz") {
		t.Fatalf("unknown auth field: got %v", err)
	}
	yml = "namespaces: [{name: a, pattern: keyvalue, plugin: {binary: " + memstore + "}}]\n" +
		"auth: {issuer: 'http://example.com', algorithms: [none]}\n"
	_, err = proxy.Parse([]byte(yml), "")
	for _, want := range []string{"auth.issuer:", "auth.audience: is required", "auth.algorithms[0]:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error naming %q", err, want)
		}
	}
}

// BenchmarkGetViaProxyAuth is BenchmarkGetViaProxy with auth on and one
// token reused by every call (the verified-token cache answers), for
// profiling what auth adds:
//
//	go test -run '^$' -bench 'GetViaProxy' -cpuprofile cpu.out ./reference/proxy/
//	go tool pprof -top -focus 'auth\.' proxy.test cpu.out
func BenchmarkGetViaProxyAuth(b *testing.B) {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	cfg := testConfig(kvNamespace("a", ""))
	cfg.LogLevel = "warn"
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
	cfg.Auth = &ac
	p, err := proxy.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	conn := dial(b, p.Addr())
	defer conn.Close()
	kv := keyvaluev1.NewKeyValueClient(conn)
	tok := iss.MustMint(iss.Claims("bench", "prism:a:read", "prism:a:write"))
	ctx := bearer(metadata.AppendToOutgoingContext(context.Background(), proxy.NamespaceKey, "a"), tok)
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
