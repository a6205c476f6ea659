// Package tracing is the OpenTelemetry setup every Prism process shares: the
// proxy, the Go client, prismctl, prism-accept's harness and every plugin
// built on the SDK. It lives under proto/ because the plugin SDK may import
// only proto/; it imports nothing of ours.
//
// Tracing is off unless configured, and off costs nothing: [Start] returns a
// nil *Tracing, whose methods return no gRPC options (no otelgrpc stats
// handler is installed at all), inject nothing and start no span.
//
// Configuration is the standard OpenTelemetry environment ([FromEnv]):
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT:
//     the OTLP/gRPC collector, e.g. http://127.0.0.1:4317 (http:// is
//     plaintext, https:// is TLS, a bare host:port is plaintext). Unset:
//     tracing is off.
//   - OTEL_TRACES_EXPORTER: otlp (the default when an endpoint is set) or
//     none (off, whatever the endpoint says). Anything else is an error.
//   - OTEL_SERVICE_NAME: the service name of the process's spans (each
//     process has a default: prism-proxy, the plugin's binary name, …).
//
// The W3C trace context (traceparent, tracestate) carries a trace across
// processes in gRPC metadata: the client injects it, the proxy continues it
// and injects its forward span's, the SDK continues it in the plugin.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// The environment variables [FromEnv] reads (the OpenTelemetry standard ones).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvExporter       = "OTEL_TRACES_EXPORTER"
	EnvServiceName    = "OTEL_SERVICE_NAME"
)

// Span attribute keys Prism sets on its spans.
const (
	AttrNamespace = attribute.Key("prism.namespace")
	AttrMethod    = attribute.Key("rpc.method.full")
	AttrRequestID = attribute.Key("prism.request_id")
	AttrSpec      = attribute.Key("prism.spec")
)

// InstrumentationName names Prism's tracers.
const InstrumentationName = "github.com/prism-suite/prism"

// Config says where traces go. The zero Config is off.
type Config struct {
	// Endpoint is the OTLP/gRPC collector: http://host:port (plaintext),
	// https://host:port (TLS) or host:port (plaintext). Empty: off.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// ServiceName names the process in its spans; empty: the process's default.
	ServiceName string `yaml:"service_name,omitempty" json:"service_name,omitempty"`
}

// Validate checks the endpoint's form (nothing is dialled).
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	_, err := newOTLPClient(c.Endpoint)
	return err
}

// Enabled reports whether c exports traces.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// FromEnv reads the OTEL_* variables through getenv (os.Getenv in a
// binary). A Config that is not Enabled means tracing is off.
func FromEnv(getenv func(string) string) (Config, error) {
	switch e := strings.TrimSpace(getenv(EnvExporter)); e {
	case "", "otlp":
	case "none":
		return Config{}, nil
	default:
		return Config{}, fmt.Errorf("%s=%q: Prism exports traces with otlp or none", EnvExporter, e)
	}
	c := Config{Endpoint: strings.TrimSpace(getenv(EnvTracesEndpoint)), ServiceName: strings.TrimSpace(getenv(EnvServiceName))}
	if c.Endpoint == "" {
		c.Endpoint = strings.TrimSpace(getenv(EnvEndpoint))
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Env returns the environment variables that give a child process (a
// plugin) this configuration under the service name service; nil when c is
// off, so the child inherits whatever its parent's environment says.
func (c Config) Env(service string) []string {
	if !c.Enabled() {
		return nil
	}
	return []string{EnvExporter + "=otlp", EnvTracesEndpoint + "=" + c.Endpoint, EnvServiceName + "=" + service}
}

// Tracing is a running trace pipeline: a tracer provider exporting over
// OTLP/gRPC in batches. A nil *Tracing is tracing off: every method is
// safe to call and does nothing.
type Tracing struct {
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
}

// Start builds the pipeline of c for a process whose service name is
// defaultService unless c names one. It returns nil, nil when c is off.
// It does not connect: spans are exported in the background, and a
// collector that is down costs dropped spans, never a failed call.
func Start(ctx context.Context, c Config, defaultService string, opts ...Option) (*Tracing, error) {
	if !c.Enabled() {
		return nil, nil
	}
	client, err := newOTLPClient(c.Endpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("start otlp trace exporter: %w", err)
	}
	name := c.ServiceName
	if name == "" {
		name = defaultService
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(name))
	return newTracing(opts, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res)), nil
}

// Option tunes [Start] and [NewWithExporter].
type Option func(*options)

type options struct{ continueOnly bool }

// ContinueOnly records only spans of traces a caller started (a sampled
// traceparent came with the call): a plugin's lifecycle and health calls
// from an untraced host, and what its driver does outside a call, make no
// traces of their own.
func ContinueOnly() Option { return func(o *options) { o.continueOnly = true } }

// NewWithExporter returns a Tracing that hands spans to exp as they end
// (tests that keep spans in memory).
func NewWithExporter(exp sdktrace.SpanExporter, service string, opts ...Option) *Tracing {
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))
	return newTracing(opts, sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
}

func newTracing(opts []Option, tpOpts ...sdktrace.TracerProviderOption) *Tracing {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	root := sdktrace.AlwaysSample()
	if o.continueOnly {
		root = sdktrace.NeverSample()
	}
	tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(root)))
	return &Tracing{tp: sdktrace.NewTracerProvider(tpOpts...), prop: propagation.TraceContext{}}
}

// Enabled reports whether t exports anything.
func (t *Tracing) Enabled() bool { return t != nil }

// Provider returns the tracer provider (a no-op one when off).
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return noopProvider
	}
	return t.tp
}

// Tracer returns Prism's tracer (a no-op one when off).
func (t *Tracing) Tracer() trace.Tracer { return t.Provider().Tracer(InstrumentationName) }

// ServerOptions returns the gRPC server options that continue the caller's
// trace in a server span per call (otelgrpc's stats handler); none when off.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if t == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(t.prop)))}
}

// DialOptions returns the gRPC dial options that make a client span per
// call and inject its W3C trace context into the call's metadata; none
// when off.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if t == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(t.prop)))}
}

// Inject writes the W3C trace context of ctx's span into md, replacing any
// traceparent and tracestate md had.
func (t *Tracing) Inject(ctx context.Context, md metadata.MD) {
	if t == nil {
		return
	}
	t.prop.Inject(ctx, metadataCarrier(md))
}

// Extract returns ctx carrying, as its remote parent, the W3C trace
// context md holds (ctx unchanged when it holds none or t is off).
func (t *Tracing) Extract(ctx context.Context, md metadata.MD) context.Context {
	if t == nil {
		return ctx
	}
	return t.prop.Extract(ctx, metadataCarrier(md))
}

// Flush exports the spans ended so far (bounded by ctx).
func (t *Tracing) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.tp.ForceFlush(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// Shutdown exports the spans still buffered (bounded by ctx) and stops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// Child starts a span named name as a child of ctx's span, with the
// tracer provider of that span, so a driver needs no tracer of its own:
// under a plugin whose SDK traces, it is a backend span of the call; under
// one that does not (or outside a traced call), it is a no-op that costs
// one check. The span is of kind internal. End it when the operation ends.
func Child(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noopSpan
	}
	return parent.TracerProvider().Tracer(InstrumentationName).Start(ctx, name)
}

// TraceID returns the hex trace id of ctx's span, or "" when it has none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

var (
	noopProvider = noop.NewTracerProvider()
	noopSpan     = trace.SpanFromContext(context.Background())
)

// metadataCarrier adapts gRPC metadata to a TextMapCarrier.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(k string) string {
	if v := metadata.MD(c).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(k, v string) { metadata.MD(c).Set(k, v) }

func (c metadataCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}
