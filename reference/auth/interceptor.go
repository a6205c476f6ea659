package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/reference/internal/authmutant"
)

// Metadata keys the interceptor reads.
const (
	// AuthorizationKey carries "Bearer <token>". It is removed from the
	// incoming metadata before the handler runs.
	AuthorizationKey = "authorization"
	// NamespaceKey names the namespace a call is for.
	NamespaceKey = "x-prism-namespace"
)

// DefaultPublicServices are served without a token: gRPC health (load
// balancers and the harness poll it) and reflection (it lists services,
// no data).
var DefaultPublicServices = []string{
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
}

// Interceptor authenticates and authorises every call of a gRPC server.
// For each call it:
//
//   - removes the authorization metadata from the context the handler sees
//     (so a proxy that forwards incoming metadata never forwards the token),
//     for every call, public ones included;
//   - lets calls to public services through (see [DefaultPublicServices]);
//   - takes the token from exactly one "authorization: Bearer <token>"
//     (scheme case-insensitive); none, several, or another scheme is
//     Unauthenticated;
//   - verifies it ([Authorizer.Verify]); any problem is Unauthenticated with
//     the message "invalid or missing credentials", and the reason goes to a
//     debug log field only;
//   - reads the namespace from exactly one x-prism-namespace holding a
//     namespace name (else InvalidArgument), the access from [MethodAccess] (a method it does not
//     know needs [Write]), and answers PermissionDenied, naming namespace and
//     access, when the token does not grant it;
//   - puts the [Principal] in the handler's context ([PrincipalFromContext]);
//   - ends an open-ended stream ([OpenEnded]: a subscription) with
//     Unauthenticated when its token expires (exp + clock_skew) while it is
//     open; other calls, once authorised, run to their end.
//
// The token is never logged. When auth is off (local development), the
// proxy does not install the interceptor at all; it says so at start.
type Interceptor struct {
	a      *Authorizer
	log    *slog.Logger
	public map[string]bool
}

// InterceptorOption configures [NewInterceptor].
type InterceptorOption func(*Interceptor)

// WithInterceptorLogger sets the logger for rejected calls (debug level;
// default: the Authorizer's).
func WithInterceptorLogger(l *slog.Logger) InterceptorOption {
	return func(i *Interceptor) { i.log = l }
}

// WithPublicServices replaces [DefaultPublicServices]: calls to these full
// service names ("grpc.health.v1.Health") need no token.
func WithPublicServices(services ...string) InterceptorOption {
	return func(i *Interceptor) {
		i.public = map[string]bool{}
		for _, s := range services {
			i.public[s] = true
		}
	}
}

// NewInterceptor returns an interceptor that authorises calls with a.
func NewInterceptor(a *Authorizer, opts ...InterceptorOption) *Interceptor {
	i := &Interceptor{a: a, log: a.log}
	WithPublicServices(DefaultPublicServices...)(i)
	for _, o := range opts {
		o(i)
	}
	return i
}

// ServerOptions returns the options that install the interceptor on a
// grpc.Server, for unary and streaming calls (the proxy's unknown-service
// handler is a streaming handler, and goes through it too).
func (i *Interceptor) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(i.Unary()), grpc.ChainStreamInterceptor(i.Stream())}
}

// Unary returns the unary server interceptor.
func (i *Interceptor) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := i.check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream server interceptor. An open-ended stream
// ([OpenEnded]: a subscription) authorised by a token ends when the token
// does: its handler's context is cancelled when
// exp + clock_skew passes (the instant a new call with the token would be
// refused), and the stream ends with Unauthenticated and the generic
// message, unless it ended otherwise first. A client reopens it with a
// fresh token.
func (i *Interceptor) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := i.check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		p, ok := PrincipalFromContext(ctx)
		if !ok || !OpenEnded(info.FullMethod) || (authmutant.Compiled && authmutant.Active() == authmutant.StreamOutlivesToken) {
			return handler(srv, &stream{ServerStream: ss, ctx: ctx})
		}
		left := p.ExpiresAt.Add(i.a.c.skew).Sub(i.a.now())
		expiry := time.Now().Add(left)
		ctx, cancel := context.WithTimeoutCause(ctx, left, errTokenExpired)
		defer cancel()
		err = handler(srv, &stream{ServerStream: ss, ctx: ctx})
		// A forwarded stream's upstream carries the expiry as its deadline,
		// so its own DeadlineExceeded may arrive before this context's timer
		// fires: any error once the expiry has passed, while the client is
		// still there, is the token's.
		if err != nil && ss.Context().Err() == nil &&
			(errors.Is(context.Cause(ctx), errTokenExpired) || !time.Now().Before(expiry)) {
			return i.reject(ctx, info.FullMethod, "", unauthenticated("the token expired while the stream was open"))
		}
		return err
	}
}

// errTokenExpired is the cause of a stream's context ending at its
// token's expiry.
var errTokenExpired = errors.New("the token expired")

// stream is a server stream with the interceptor's context.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// BearerToken returns the token of a call's authorization metadata values:
// exactly one, "Bearer <token>" (the scheme in any case). Anything else is
// an Unauthenticated [*Error] saying what was wrong.
func BearerToken(authz []string) (string, error) {
	switch len(authz) {
	case 0:
		return "", unauthenticated("no authorization metadata")
	case 1:
		scheme, rest, _ := strings.Cut(authz[0], " ")
		if !strings.EqualFold(scheme, "bearer") {
			return "", unauthenticated("authorization is not a Bearer token")
		}
		return strings.TrimLeft(rest, " "), nil
	default:
		return "", unauthenticated("authorization metadata sent %d times", len(authz))
	}
}

// check authorises one call and returns the handler's context.
func (i *Interceptor) check(ctx context.Context, full string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	authz := md.Get(AuthorizationKey)
	if len(authz) > 0 {
		delete(md, AuthorizationKey) // md is this call's own copy: FromIncomingContext copies
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if i.public[serviceOf(full)] {
		return ctx, nil
	}
	token, err := BearerToken(authz)
	if err != nil {
		return nil, i.reject(ctx, full, "", err)
	}
	p, err := i.a.Verify(ctx, token)
	if err != nil {
		return nil, i.reject(ctx, full, "", err)
	}
	ns := md.Get(NamespaceKey)
	if len(ns) != 1 || ns[0] == "" {
		return nil, status.Errorf(codes.InvalidArgument, "request metadata %s is required once: it names the namespace the call is for", NamespaceKey)
	}
	if !nameRE.MatchString(ns[0]) {
		return nil, status.Errorf(codes.InvalidArgument, "request metadata %s is not a namespace name (1-128 letters, digits, '.', '_' or '-')", NamespaceKey)
	}
	access, known := MethodAccess(full)
	if !known {
		access = Write
	}
	if !p.Allows(ns[0], access) {
		return nil, i.reject(ctx, full, ns[0], &Error{Kind: ErrPermissionDenied, Namespace: ns[0], Access: access,
			Subject: p.Subject, Reason: "grants " + grantsText(p.Grants())})
	}
	return ContextWithPrincipal(ctx, p), nil
}

// reject logs why a call was refused (debug) and returns its status.
func (i *Interceptor) reject(ctx context.Context, full, ns string, err error) error {
	var st *status.Status
	attrs := []slog.Attr{slog.String("method", full)}
	if ns != "" {
		attrs = append(attrs, slog.String("namespace", ns))
	}
	if e, ok := err.(*Error); ok {
		st = e.GRPCStatus()
		attrs = append(attrs, slog.String("reason", e.Reason))
		if e.Subject != "" {
			attrs = append(attrs, slog.String("subject", e.Subject))
		}
	} else {
		st = status.FromContextError(err)
	}
	attrs = append(attrs, slog.String("code", st.Code().String()))
	if i.log.Enabled(ctx, slog.LevelDebug) {
		i.log.LogAttrs(ctx, slog.LevelDebug, "auth: call refused", attrs...)
	}
	return st.Err()
}

func grantsText(gs []Grant) string {
	if len(gs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, g := range gs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(g.Namespace + ":" + g.Access.String())
	}
	return b.String()
}

func serviceOf(full string) string {
	s := strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
