package mutant

import (
	"context"

	"google.golang.org/grpc"

	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/detail"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// protocolMutants lie in the standard health details (proto/PROTOCOL.md §5)
// that hosts and suites observe plugins through: the defects of a plugin
// whose counters are not wired to its calls.
var protocolMutants = []Mutant{
	{Name: "blind-to-tokens", Breaks: capability.Lifecycle,
		Defect: "HealthCheck reports prism.authorization_headers_seen as 0 whatever metadata the calls carried",
		unary:  healthDetails(map[string]string{detail.AuthorizationHeadersSeen: "0"})},
	{Name: "inflight-always-zero", Breaks: capability.Lifecycle,
		Defect: "HealthCheck reports prism.inflight_calls and prism.open_streams as 0 while a subscription is open",
		unary:  healthDetails(map[string]string{detail.InflightCalls: "0", detail.OpenStreams: "0"})},
}

func init() { all = append(all, protocolMutants...) }

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
