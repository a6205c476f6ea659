package auth_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
)

// Example wires an Authorizer to a test issuer, installs its interceptor on
// a gRPC server, and authorises a read-only token.
func Example() {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		panic(err)
	}
	defer iss.Close()

	cfg := auth.DefaultConfig()
	cfg.Issuer, cfg.Audience = iss.URL(), iss.Audience()
	a, err := auth.New(cfg)
	if err != nil {
		panic(err)
	}
	defer a.Close()
	srv := grpc.NewServer(auth.NewInterceptor(a).ServerOptions()...)
	defer srv.Stop()

	tok := iss.MustMint(iss.Claims("alice", "prism:orders:read"))
	p, err := a.Authorize(context.Background(), tok, "orders", auth.Read)
	fmt.Println(p.Subject, p.Grants(), err)
	_, err = a.Authorize(context.Background(), tok, "orders", auth.Write)
	fmt.Println(status.Code(err), err)
	_, err = a.Authorize(context.Background(), tok+"x", "orders", auth.Read)
	fmt.Println(status.Code(err), err)
	// Output:
	// alice [{orders read}] <nil>
	// PermissionDenied permission denied: the token does not grant write access to namespace "orders"
	// Unauthenticated invalid or missing credentials
}
