package mutant

import (
	"context"

	"google.golang.org/grpc"

	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// variants are plugins that work but declare something other than what they
// do; they test the runner's capability cross-check rather than the specs.
var variants = []Mutant{
	{Name: "undeclared-ttl", Breaks: capability.KeyValueTTL, Defect: "implements keyvalue.ttl but leaves it out of Describe",
		unary: func() grpc.UnaryServerInterceptor { return hideCapability(capability.KeyValueTTL) }},
}

// Variants returns the variants in a stable order.
func Variants() []Mutant { return append([]Mutant(nil), variants...) }

// hideCapability removes c from Describe's answer.
func hideCapability(c capability.Name) grpc.UnaryServerInterceptor {
	full := "/" + lifecyclev1.Lifecycle_ServiceDesc.ServiceName + "/Describe"
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err != nil || info.FullMethod != full {
			return resp, err
		}
		d := resp.(*lifecyclev1.DescribeResponse)
		kept := d.Capabilities[:0]
		for _, x := range d.GetCapabilities() {
			if x.GetName() != string(c) {
				kept = append(kept, x)
			}
		}
		d.Capabilities = kept
		return d, nil
	}
}
