package proxy_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/harness/proxy"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/auth"
)

func TestStartWithAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
	o := proxy.DefaultOptions()
	o.Binary = filepath.Join(bin, "prism-proxy")
	o.Auth = &ac
	p, cfg := startReadingConfig(t, ctx, o, proxy.Namespace{Name: "a", Plugin: filepath.Join(bin, "prism-memstore")})
	if !strings.Contains(string(cfg), "issuer: "+iss.URL()) || !strings.Contains(string(cfg), "jwks_refetch_interval: 1m0s") {
		t.Errorf("the config lacks the auth section:\n%s", cfg)
	}
	if err := p.WaitServing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	kv := p.Target("a").KeyValue()
	_, err = kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Set without a token: got %v, want Unauthenticated", err)
	}
	tok := iss.MustMint(iss.Claims("alice", "prism:a:write"))
	wctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	if _, err := kv.Set(wctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Errorf("Set with a write token: %v", err)
	}
	if strings.Contains(p.Stderr(), tok) {
		t.Errorf("the proxy logged the token")
	}
}
