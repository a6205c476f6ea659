package sdk

import (
	"context"
	"path/filepath"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/tracing"
)

// callAttributes are the attributes of a call's server span: the
// namespace, method and request id.
func callAttributes(ctx context.Context, method string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{tracing.AttrMethod.String(method)}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(NamespaceKey); len(v) > 0 {
			attrs = append(attrs, tracing.AttrNamespace.String(v[0]))
		}
		if v := md.Get(RequestIDKey); len(v) > 0 {
			attrs = append(attrs, tracing.AttrRequestID.String(v[0]))
		}
	}
	return attrs
}

// annotateUnary and annotateStream put the call's attributes on the server
// span otelgrpc made (installed only with tracing on).
func annotateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(callAttributes(ctx, info.FullMethod)...)
	}
	return h(ctx, req)
}

func annotateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if sp := trace.SpanFromContext(ss.Context()); sp.IsRecording() {
		sp.SetAttributes(callAttributes(ss.Context(), info.FullMethod)...)
	}
	return h(srv, ss)
}

// inprocSpan starts the server span of a call on the in-process channel,
// which has no stats handlers and passes no context values: the caller's
// trace arrives as traceparent in the incoming metadata, as over a socket.
func (s *Server) inprocSpan(ctx context.Context, method string) (context.Context, trace.Span) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = s.tracing.Extract(ctx, md)
	}
	// Its attributes are set by annotateUnary/annotateStream, next in the
	// chain, as on the socket.
	return s.tracing.Tracer().Start(ctx, method[1:], trace.WithSpanKind(trace.SpanKindServer))
}

func endSpan(sp trace.Span, err error) {
	if err != nil {
		sp.SetStatus(codes.Error, status.Convert(err).Message())
		sp.SetAttributes(attribute.String("rpc.grpc.status_code", status.Code(err).String()))
	}
	sp.End()
}

func (s *Server) inprocTraceUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, sp := s.inprocSpan(ctx, info.FullMethod)
	resp, err := h(ctx, req)
	endSpan(sp, err)
	return resp, err
}

func (s *Server) inprocTraceStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, sp := s.inprocSpan(ss.Context(), info.FullMethod)
	err := h(srv, &spanStream{ServerStream: ss, ctx: ctx})
	endSpan(sp, err)
	return err
}

type spanStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *spanStream) Context() context.Context { return s.ctx }

// serviceName is a plugin process's default service name: its binary's.
func serviceName(args []string) string {
	if len(args) == 0 {
		return "prism-plugin"
	}
	return filepath.Base(args[0])
}
