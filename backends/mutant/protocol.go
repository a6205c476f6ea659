package mutant

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/detail"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// protocolMutants break what hosts and suites observe plugins through
// (proto/PROTOCOL.md §5): two lie in the standard health details, the
// defects of a plugin whose counters are not wired to its calls; one piles
// up calls on a hung backend, which prism.inflight_calls must show.
var protocolMutants = []Mutant{
	{Name: "blind-to-tokens", Breaks: capability.Lifecycle,
		Defect: "HealthCheck reports prism.authorization_headers_seen as 0 whatever metadata the calls carried",
		unary:  healthDetails(map[string]string{detail.AuthorizationHeadersSeen: "0"})},
	{Name: "inflight-always-zero", Breaks: capability.Lifecycle,
		Defect: "HealthCheck reports prism.inflight_calls and prism.open_streams as 0 while a subscription is open",
		unary:  healthDetails(map[string]string{detail.InflightCalls: "0", detail.OpenStreams: "0"})},
	{Name: "retry-past-deadline", Breaks: capability.KeyValueBasic, Base: "redis",
		Defect: "a KeyValue call answers DeadlineExceeded at its deadline, but the plugin goes on retrying its backend call without one until the backend answers",
		unary:  retryPastDeadline},
}

func init() { all = append(all, protocolMutants...) }

// retryPastDeadline answers a KeyValue call when its deadline passes but
// keeps calling the handler, detached from the caller's context, until the
// backend answers: on a hung backend such calls pile up in the plugin.
func retryPastDeadline() grpc.UnaryServerInterceptor {
	prefix := "/" + keyvaluev1.KeyValue_ServiceDesc.ServiceName + "/"
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, prefix) {
			return h(ctx, req)
		}
		type result struct {
			resp any
			err  error
		}
		done := make(chan result, 1)
		go func() {
			for {
				resp, err := h(context.WithoutCancel(ctx), req)
				// A backend error (not the plugin refusing the call because
				// it drains) is retried.
				if st := status.Convert(err); st.Code() == codes.Unavailable && !strings.Contains(st.Message(), "draining") {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				done <- result{resp, err}
				return
			}
		}()
		select {
		case r := <-done:
			return r.resp, r.err
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// healthDetails overwrites details of every lifecycle HealthCheck answer.
func healthDetails(lie map[string]string) func() grpc.UnaryServerInterceptor {
	full := "/" + lifecyclev1.Lifecycle_ServiceDesc.ServiceName + "/HealthCheck"
	return func() grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil || info.FullMethod != full {
				return resp, err
			}
			hr := resp.(*lifecyclev1.HealthCheckResponse)
			if hr.Details == nil {
				hr.Details = map[string]string{}
			}
			for k, v := range lie {
				hr.Details[k] = v
			}
			return hr, nil
		}
	}
}
