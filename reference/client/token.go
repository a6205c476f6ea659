package client

import (
	"context"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WithTokenSource sends every call's token from ts as "authorization:
// Bearer <token>". ts is asked for each call, so a refreshing source
// (reference/login.TokenSource, or oauth2.ReuseTokenSource over a config's
// refresh) hands out a fresh token before the old one expires. When ts
// fails the call fails with Unauthenticated and ts's error, without being
// sent. The connection is plaintext unless WithDialOptions gives TLS: keep
// it on a loopback address or give credentials.
func WithTokenSource(ts oauth2.TokenSource) Option {
	return WithDialOptions(grpc.WithPerRPCCredentials(tokenCredentials{ts}))
}

// WithToken sends token (a static bearer token) with every call.
func WithToken(token string) Option {
	return WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"}))
}

type tokenCredentials struct{ ts oauth2.TokenSource }

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t, err := c.ts.Token()
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "get a token: %v", err)
	}
	return map[string]string{"authorization": t.Type() + " " + t.AccessToken}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// proxy is often reached in plaintext on a loopback address.
func (tokenCredentials) RequireTransportSecurity() bool { return false }
