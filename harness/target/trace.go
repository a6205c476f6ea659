package target

import (
	"context"
	"sync"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/prism-suite/prism/proto/tracing"
)

// specTrace is the tracing of the harness's calls: prism-accept turns it on
// ([SetTracing]) when it is given an OTLP endpoint, and runs each spec under
// a root span of its own ([BeginSpec]). Specs run one at a time in a
// process, so one current span is enough.
var specTrace struct {
	mu  sync.Mutex
	t   *tracing.Tracing
	cur trace.Span // the running spec's root span; nil between specs
}

// SetTracing makes the connections dialled from now on ([Dial], the
// plugin launcher's, through [DialOptions]) trace their calls with t: a
// client span per call whose W3C context goes to the plugin or proxy, a
// child of the call's context's span or, when it has none, of the running
// spec's. nil turns it off.
func SetTracing(t *tracing.Tracing) {
	specTrace.mu.Lock()
	defer specTrace.mu.Unlock()
	specTrace.t = t
}

// Tracing returns what [SetTracing] set (nil: off).
func Tracing() *tracing.Tracing {
	specTrace.mu.Lock()
	defer specTrace.mu.Unlock()
	return specTrace.t
}

// BeginSpec starts the root span of the spec name, which the harness's
// calls use while the spec runs, and returns its trace id and the function
// that ends it (failed marks the span as an error). With tracing off it
// returns "" and a no-op.
func BeginSpec(name string) (traceID string, end func(failed bool)) {
	specTrace.mu.Lock()
	defer specTrace.mu.Unlock()
	if specTrace.t == nil {
		return "", func(bool) {}
	}
	_, sp := specTrace.t.Tracer().Start(context.Background(), name, trace.WithNewRoot(),
		trace.WithAttributes(tracing.AttrSpec.String(name)))
	specTrace.cur = sp
	return sp.SpanContext().TraceID().String(), func(failed bool) {
		if failed {
			sp.SetStatus(otelcodes.Error, "the spec did not pass")
		}
		sp.End()
		specTrace.mu.Lock()
		defer specTrace.mu.Unlock()
		if specTrace.cur == sp {
			specTrace.cur = nil
		}
	}
}

// DialOptions are the options that trace a harness connection's calls (see
// [SetTracing]); none with tracing off.
func DialOptions() []grpc.DialOption {
	t := Tracing()
	if t == nil {
		return nil
	}
	return append(t.DialOptions(), grpc.WithChainUnaryInterceptor(specUnary), grpc.WithChainStreamInterceptor(specStream))
}

// inSpec returns ctx with the running spec's span when ctx has none. The
// interceptors run before otelgrpc's stats handler, which makes the call's
// span a child of it.
func inSpec(ctx context.Context) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	specTrace.mu.Lock()
	cur := specTrace.cur
	specTrace.mu.Unlock()
	if cur == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, cur)
}

func specUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(inSpec(ctx), method, req, reply, cc, opts...)
}

func specStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(inSpec(ctx), desc, cc, method, opts...)
}
