package mutant

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

func init() { all = append(all, lifecycleMutants...) }

// lifecycleMethod is the full name of a Lifecycle method.
func lifecycleMethod(m string) string {
	return "/" + lifecyclev1.Lifecycle_ServiceDesc.ServiceName + "/" + m
}

// lifecycleMutants break the state machine: the slips of a plugin that
// tracks its state loosely, or drains without really waiting.
var lifecycleMutants = []Mutant{
	{Name: "start-at-initialize", Breaks: capability.Lifecycle,
		Defect: "Initialize also starts the data services, so data calls are served before Start",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				if err == nil && info.FullMethod == lifecycleMethod("Initialize") {
					_, err = info.Server.(lifecyclev1.LifecycleServer).Start(ctx, &lifecyclev1.StartRequest{})
				}
				return resp, err
			}
		}},
	{Name: "reinitialize-after-start", Breaks: capability.Lifecycle,
		Defect: "Initialize after Start answers OK and silently keeps the old config",
		unary: func() grpc.UnaryServerInterceptor {
			var started atomic.Bool
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if info.FullMethod == lifecycleMethod("Initialize") && started.Load() {
					return &lifecyclev1.InitializeResponse{}, nil
				}
				resp, err := h(ctx, req)
				if err == nil && info.FullMethod == lifecycleMethod("Start") {
					started.Store(true)
				}
				return resp, err
			}
		}},
	{Name: "drain-no-wait", Breaks: capability.Lifecycle,
		Defect: "Drain refuses new calls but answers at once, reporting nothing in flight, without waiting for calls in flight",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if info.FullMethod != lifecycleMethod("Drain") {
					return h(ctx, req)
				}
				done, cancel := context.WithCancel(ctx)
				cancel() // the SDK's drain switches state, then stops waiting at once
				if _, err := h(done, req); err != nil {
					return nil, err
				}
				return &lifecyclev1.DrainResponse{InFlight: 0}, nil
			}
		}},
	{Name: "drain-ignores-deadline", Breaks: capability.Lifecycle,
		Defect: "Drain ignores its deadline and waits for calls in flight as long as the caller waits",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if r, ok := req.(*lifecyclev1.DrainRequest); ok {
					r.Deadline = nil
				}
				return h(ctx, req)
			}
		}},
	{Name: "healthy-while-draining", Breaks: capability.Lifecycle,
		Defect: "HealthCheck goes on reporting the backend's health (HEALTHY) while the plugin drains",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				if r, ok := resp.(*lifecyclev1.HealthCheckResponse); ok && err == nil &&
					r.GetStatus() == lifecyclev1.HealthCheckResponse_STATUS_DEGRADED && r.GetMessage() == "draining" {
					r.Status, r.Message = lifecyclev1.HealthCheckResponse_STATUS_HEALTHY, ""
				}
				return resp, err
			}
		}},
	{Name: "serving-while-draining", Breaks: capability.Lifecycle,
		Defect: "gRPC health keeps the data services SERVING after Drain and Stop",
		unary: func() grpc.UnaryServerInterceptor {
			var started atomic.Bool
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				if err == nil && info.FullMethod == lifecycleMethod("Start") {
					started.Store(true)
				}
				if r, ok := resp.(*healthpb.HealthCheckResponse); ok && err == nil && started.Load() {
					r.Status = healthpb.HealthCheckResponse_SERVING
				}
				return resp, err
			}
		}},
	{Name: "start-always-ok", Breaks: capability.Lifecycle,
		Defect: "Start answers OK in every state, also when it refuses to start (before Initialize, after Drain or Stop)",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				if info.FullMethod == lifecycleMethod("Start") && status.Code(err) == codes.FailedPrecondition {
					return &lifecyclev1.StartResponse{}, nil
				}
				return resp, err
			}
		}},
	{Name: "stop-noop", Breaks: capability.Lifecycle,
		Defect: "Stop answers OK but leaves the plugin as it was, serving data calls",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if info.FullMethod == lifecycleMethod("Stop") {
					return &lifecyclev1.StopResponse{}, nil
				}
				return h(ctx, req)
			}
		}},
	{Name: "healthy-before-initialize", Breaks: capability.Lifecycle,
		Defect: "HealthCheck reports HEALTHY before Initialize (the process is up, but there is no backend yet)",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				if r, ok := resp.(*lifecyclev1.HealthCheckResponse); ok && err == nil && r.GetMessage() == "plugin is new" {
					r.Status, r.Message = lifecyclev1.HealthCheckResponse_STATUS_HEALTHY, ""
				}
				return resp, err
			}
		}},
	{Name: "rotate-any-state", Breaks: capability.Lifecycle, Base: "nats",
		Defect: "RotateCredentials answers OK before Initialize and after Stop, rotating nothing",
		unary: func() grpc.UnaryServerInterceptor {
			return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				if info.FullMethod == lifecycleMethod("RotateCredentials") && status.Code(err) == codes.FailedPrecondition {
					return &lifecyclev1.RotateCredentialsResponse{}, nil
				}
				return resp, err
			}
		}},
}
