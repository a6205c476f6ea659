package proxy

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/tracing"
)

// annotate puts the namespace, method and request id on the call's server
// span (otelgrpc's, in ctx); only called with tracing on.
func annotate(ctx context.Context, ns, full, id string) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(tracing.AttrNamespace.String(ns), tracing.AttrMethod.String(full), tracing.AttrRequestID.String(id))
	}
}

// forwardSpan starts the span of forwarding a call to its plugin (process
// or builtin), a child of the call's server span; its context is what the
// plugin continues.
func (p *Proxy) forwardSpan(ctx context.Context, ns, full, id string) (context.Context, trace.Span) {
	return p.tracing.Tracer().Start(ctx, "forward "+full[1:], trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.AttrNamespace.String(ns), tracing.AttrMethod.String(full), tracing.AttrRequestID.String(id)))
}

// endSpan ends sp with err's status code.
func endSpan(sp trace.Span, err error) {
	if err != nil {
		st := status.Convert(err)
		sp.SetAttributes(attribute.String("rpc.grpc.status_code", st.Code().String()))
		sp.SetStatus(otelcodes.Error, st.Message())
	}
	sp.End()
}
