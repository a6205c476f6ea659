package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/reference/auth"
	"github.com/prism-suite/prism/reference/internal/authmutant"
)

// Auth in the proxy (see reference/auth for the rules): when Config.Auth is
// set, an interceptor in front of routing authenticates every call and
// authorises it for its namespace, and strips the authorization metadata
// before the call is routed (and [Forwarded] never lets it through either); the
// proxy's own health and reflection services need no token. When it is not
// set, the proxy logs a warning at start that every call is accepted.

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

// authState is the proxy's auth: the authorizer (nil when auth is off) and
// the count of refused calls.
type authState struct {
	a       *auth.Authorizer
	refused *prometheus.CounterVec
}

// setupAuth builds the authorizer when auth is on; New calls it.
func (p *Proxy) setupAuth() error {
	authmutant.Warn(p.log) // a prism_mutants build only
	if p.cfg.Auth == nil {
		return nil
	}
	a, err := auth.New(*p.cfg.Auth, auth.WithLogger(p.log))
	if err != nil {
		return errors.Join(prefixAll("auth.", err)...)
	}
	p.auth.a = a
	p.auth.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prism_proxy_auth_refused_total",
		Help: "Calls the auth interceptor refused, by code (Unauthenticated, PermissionDenied, InvalidArgument, Unavailable)."},
		[]string{"code"})
	p.m.reg.MustRegister(p.auth.refused)
	p.m.registerAuth(a)
	return nil
}

func prefixAll(prefix string, err error) []error {
	var out []error
	for _, e := range unjoin(err) {
		out = append(out, errors.New(prefix+e.Error()))
	}
	return out
}

// authServerOptions returns the server options that put auth in front of
// routing, fetching the issuer's keys first (a failure is a warning: calls
// get Unavailable until the keys are fetched). With auth off it returns
// none and warns.
func (p *Proxy) authServerOptions(ctx context.Context) []grpc.ServerOption {
	if p.auth.a == nil {
		p.log.Warn("auth is OFF: every call is accepted without a token; configure auth: (issuer, audience, grants) " +
			"anywhere but local development")
		return nil
	}
	c := p.auth.a.Config()
	rctx, cancel := context.WithTimeout(ctx, c.HTTPTimeout)
	defer cancel()
	if err := p.auth.a.Refresh(rctx); err != nil {
		p.log.Warn("auth: the issuer's keys could not be fetched yet; data calls get Unavailable until they are",
			"issuer", c.Issuer, "error", err.Error())
	}
	p.log.Info("auth is on", "issuer", c.Issuer, "audience", c.Audience, "algorithms", c.Algorithms,
		"grants_claim", c.Grants.Claim, "grants_pattern", c.Grants.Pattern, "grants_mapping", len(c.Grants.Mapping))
	i := auth.NewInterceptor(p.auth.a, auth.WithInterceptorLogger(p.log))
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(p.authUnary(i.Unary())),
		grpc.ChainStreamInterceptor(p.authStream(i.Stream())),
	}
}

// authUnary wraps the auth interceptor: it counts refusals and applies a
// test-only defect, if any.
func (p *Proxy) authUnary(inner grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		d := authmutant.Active()
		reached := false
		h := func(hctx context.Context, req any) (any, error) {
			reached = true
			if authmutant.Compiled && d == authmutant.LeakToken {
				hctx = withAuthorization(hctx, ctx)
			}
			return handler(hctx, req)
		}
		if authmutant.Compiled && d != "" { // Compiled: no defect branch in the default build
			if d == authmutant.AlgNone && unsignedToken(ctx) {
				return h(withoutAuthorization(ctx), req)
			}
			if d == authmutant.ReadGrantsWrite {
				info = &grpc.UnaryServerInfo{Server: info.Server, FullMethod: asRead(info.FullMethod)}
			}
		}
		resp, err := inner(ctx, req, info, h)
		if err != nil && !reached {
			p.auth.refused.WithLabelValues(status.Code(err).String()).Inc()
		}
		return resp, err
	}
}

// authStream is authUnary for streaming calls (and the unknown-service
// handler, which routes every forwarded call).
func (p *Proxy) authStream(inner grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		d := authmutant.Active()
		orig := ss.Context()
		reached := false
		h := func(srv any, hs grpc.ServerStream) error {
			reached = true
			if authmutant.Compiled && d == authmutant.LeakToken {
				hs = &ctxStream{ServerStream: hs, ctx: withAuthorization(hs.Context(), orig)}
			}
			return handler(srv, hs)
		}
		if authmutant.Compiled && d != "" {
			if d == authmutant.AlgNone && unsignedToken(orig) {
				return h(srv, &ctxStream{ServerStream: ss, ctx: withoutAuthorization(orig)})
			}
			if d == authmutant.ReadGrantsWrite {
				info = &grpc.StreamServerInfo{FullMethod: asRead(info.FullMethod),
					IsClientStream: info.IsClientStream, IsServerStream: info.IsServerStream}
			}
		}
		err := inner(srv, ss, info, h)
		if err != nil && !reached {
			p.auth.refused.WithLabelValues(status.Code(err).String()).Inc()
		}
		return err
	}
}

// ctxStream is a server stream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// withAuthorization puts from's authorization metadata back into ctx
// (defect leak-token).
func withAuthorization(ctx, from context.Context) context.Context {
	in, _ := metadata.FromIncomingContext(from)
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	md[auth.AuthorizationKey] = in.Get(auth.AuthorizationKey)
	return metadata.NewIncomingContext(ctx, md)
}

func withoutAuthorization(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	delete(md, auth.AuthorizationKey)
	return metadata.NewIncomingContext(ctx, md)
}

// unsignedToken reports whether the call's bearer token has alg "none" in
// any case (defect alg-none).
func unsignedToken(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(auth.AuthorizationKey)
	if len(v) != 1 {
		return false
	}
	_, tok, _ := strings.Cut(v[0], " ")
	seg, _, _ := strings.Cut(strings.TrimSpace(tok), ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(b, &h) == nil && strings.EqualFold(h.Alg, "none")
}

// asRead names a read method in place of a known write one (defect
// read-grants-write): the interceptor then asks for read access only.
func asRead(full string) string {
	if a, known := auth.MethodAccess(full); known && a == auth.Write {
		return "/prism.keyvalue.v1.KeyValue/Get"
	}
	return full
}

// registerAuth adds the authorizer's counters to the metrics.
func (m *metrics) registerAuth(a *auth.Authorizer) {
	counter := func(name, help string, v func(auth.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(a.Stats())) })
	}
	m.reg.MustRegister(
		counter("prism_proxy_auth_token_cache_hits_total", "Tokens answered from the verified-token cache.",
			func(s auth.Stats) uint64 { return s.CacheHits }),
		counter("prism_proxy_auth_token_cache_misses_total", "Tokens verified in full (signature and claims).",
			func(s auth.Stats) uint64 { return s.CacheMisses }),
		counter("prism_proxy_auth_jwks_fetches_total", "JWKS fetches started.",
			func(s auth.Stats) uint64 { return s.JWKSFetches }),
		counter("prism_proxy_auth_jwks_failures_total", "JWKS fetches that failed.",
			func(s auth.Stats) uint64 { return s.JWKSFailures }),
	)
}
