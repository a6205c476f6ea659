package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// BackendCredentials is the contract of capability auth.backend-credentials.
// A driver implements it to declare that:
//
//   - it authenticates to its backend with [Config.Credentials] only (never
//     with secrets in [Config.Values]);
//   - Init reports credentials the backend rejects, and missing ones the
//     backend requires, with [ErrUnauthenticated], and malformed ones (a
//     user without a password, say) with [InvalidConfig] naming
//     "credentials.<name>";
//   - no credential value ever appears in an error, a log line or Health.
type BackendCredentials interface {
	// AuthenticatesWithCredentials marks the contract; it is never called.
	AuthenticatesWithCredentials()
}

// CredentialRotator is the contract of capability auth.rotation (it counts
// only together with [BackendCredentials]). The SDK answers the lifecycle
// call RotateCredentials with Unimplemented for a driver without it.
type CredentialRotator interface {
	// RotateCredentials replaces the credentials given in Init, whole. It
	// must:
	//
	//   - check the new credentials against the backend first, reporting
	//     malformed ones with [InvalidConfig], rejected ones with
	//     [ErrUnauthenticated] and an unreachable backend with
	//     [ErrUnavailable]; on any error the old credentials stay in use;
	//   - then send every new call with the new credentials, and let calls in
	//     flight on the old ones finish (dropping none);
	//   - return once no call in flight uses the old credentials, or ctx
	//     ends (then with ctx's error, the new credentials in use all the
	//     same), so the host knows when it may revoke them.
	//
	// It is called after Init, never concurrently with another
	// RotateCredentials, Init or Close, but concurrently with data calls.
	RotateCredentials(ctx context.Context, credentials map[string]string) error
}

// AuthorizationSeenKey is the response trailer the SDK adds to a data call
// that arrived with "authorization" metadata; the standard HealthCheck detail
// [detail.AuthorizationHeadersSeen] counts such calls. A host must strip
// bearer tokens before it forwards a call to a plugin: plugins never need
// them, and a token that reaches one can be logged or replayed. The detail is
// the protocol's witness (the auth suite reads it); the trailer is an extra
// of the Go SDK, for people and the proxy's own tests.
const AuthorizationSeenKey = "x-prism-plugin-saw-authorization"

// tripwire counts data calls that carry authorization metadata, tells the
// caller in a trailer and warns once in the log (without the value).
type tripwire struct {
	seen atomic.Int64
	once sync.Once
}

func (s *Server) sawAuthorization(ctx context.Context, method string) bool {
	if !isDataMethod(method) {
		return false
	}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md["authorization"]) == 0 {
		return false
	}
	s.trip.seen.Add(1)
	s.trip.once.Do(func() {
		s.log.Warn("a call arrived with authorization metadata: the host forwards bearer tokens to this plugin, "+
			"which never needs them; it must strip them", "method", method)
	})
	return true
}

func (s *Server) tripUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.sawAuthorization(ctx, info.FullMethod) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(AuthorizationSeenKey, "1"))
	}
	return h(ctx, req)
}

func (s *Server) tripStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if s.sawAuthorization(ss.Context(), info.FullMethod) {
		ss.SetTrailer(metadata.Pairs(AuthorizationSeenKey, "1"))
	}
	return h(srv, ss)
}

// isDataMethod reports whether a full method name ("/pkg.Service/Method")
// belongs to a data service: any prism.* service but Lifecycle.
func isDataMethod(method string) bool {
	return strings.HasPrefix(method, "/prism.") &&
		!strings.HasPrefix(method, "/"+lifecyclev1.Lifecycle_ServiceDesc.ServiceName+"/")
}

func (l *lifecycleService) RotateCredentials(ctx context.Context, req *lifecyclev1.RotateCredentialsRequest) (*lifecyclev1.RotateCredentialsResponse, error) {
	s := l.s
	r, ok := s.driver.(CredentialRotator)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "rotate credentials: this plugin cannot replace its credentials at run time (auth.rotation is not declared)")
	}
	// Under the lifecycle lock: never concurrent with Initialize or Stop.
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st := state(s.state.Load()); st {
	case stateInitialized, stateStarted, stateDraining:
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "rotate credentials: plugin is %s; RotateCredentials is allowed after Initialize and before Stop", st)
	}
	if err := r.RotateCredentials(ctx, req.GetCredentials()); err != nil {
		s.log.Warn("rotate credentials failed", "error", err.Error())
		return nil, ToStatus(fmt.Errorf("rotate credentials: %w", err))
	}
	s.log.Info("credentials rotated", "credentials", len(req.GetCredentials()))
	return &lifecyclev1.RotateCredentialsResponse{}, nil
}
