package tracing_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"

	"github.com/prism-suite/prism/proto/tracing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    tracing.Config
		wantErr string
	}{
		{"nothing set: off", nil, tracing.Config{}, ""},
		{"endpoint", map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:4317", tracing.EnvServiceName: "svc"},
			tracing.Config{Endpoint: "http://127.0.0.1:4317", ServiceName: "svc"}, ""},
		{"the traces endpoint wins", map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvTracesEndpoint: "127.0.0.1:2"},
			tracing.Config{Endpoint: "127.0.0.1:2"}, ""},
		{"exporter none turns it off", map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:4317", tracing.EnvExporter: "none"}, tracing.Config{}, ""},
		{"exporter otlp", map[string]string{tracing.EnvEndpoint: "https://collector:4317", tracing.EnvExporter: "otlp"}, tracing.Config{Endpoint: "https://collector:4317"}, ""},
		{"exporter otlp without endpoint: off", map[string]string{tracing.EnvExporter: "otlp"}, tracing.Config{}, ""},
		{"unknown exporter", map[string]string{tracing.EnvExporter: "zipkin"}, tracing.Config{}, "OTEL_TRACES_EXPORTER"},
		{"bad scheme", map[string]string{tracing.EnvEndpoint: "ftp://127.0.0.1:4317"}, tracing.Config{}, "endpoint"},
		{"no port", map[string]string{tracing.EnvEndpoint: "collector"}, tracing.Config{}, "endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracing.FromEnv(env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromEnv error = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("FromEnv = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestEnvForAChild(t *testing.T) {
	if got := (tracing.Config{}).Env("prism-memstore"); got != nil {
		t.Errorf("off: Env = %q, want nil", got)
	}
	got := tracing.Config{Endpoint: "http://127.0.0.1:4317", ServiceName: "prism-proxy"}.Env("prism-memstore")
	back, err := tracing.FromEnv(func(k string) string {
		for _, kv := range got {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	})
	if err != nil || back != (tracing.Config{Endpoint: "http://127.0.0.1:4317", ServiceName: "prism-memstore"}) {
		t.Errorf("a child reading Env %q gets %+v, %v", got, back, err)
	}
}

// TestOffIsNil: tracing off is a nil *Tracing that installs nothing.
func TestOffIsNil(t *testing.T) {
	tr, err := tracing.Start(context.Background(), tracing.Config{}, "x")
	if err != nil || tr != nil {
		t.Fatalf("Start(off) = %v, %v; want nil, nil", tr, err)
	}
	if tr.Enabled() || len(tr.ServerOptions()) != 0 || len(tr.DialOptions()) != 0 {
		t.Error("a nil Tracing is enabled or has gRPC options")
	}
	md := metadata.MD{}
	tr.Inject(context.Background(), md)
	if len(md) != 0 {
		t.Errorf("a nil Tracing injected %v", md)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	ctx, sp := tracing.Child(context.Background(), "op")
	if sp.IsRecording() || tracing.TraceID(ctx) != "" {
		t.Error("Child outside a traced call records")
	}
}

// TestInjectExtractAndChild: a span's context crosses metadata, and Child
// makes a child with the parent's provider.
func TestInjectExtractAndChild(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewWithExporter(exp, "svc")
	ctx, parent := tr.Tracer().Start(context.Background(), "parent")
	md := metadata.Pairs("traceparent", "00-11111111111111111111111111111111-2222222222222222-01")
	tr.Inject(ctx, md)
	if v := md.Get("traceparent"); len(v) != 1 || !strings.Contains(v[0], parent.SpanContext().SpanID().String()) {
		t.Fatalf("traceparent after Inject = %q; want the span's, replacing the one there", v)
	}
	rctx := tr.Extract(context.Background(), md)
	_, child := tracing.Child(ctx, "child")
	child.End()
	parent.End()
	if got := tracing.TraceID(rctx); got != parent.SpanContext().TraceID().String() {
		t.Errorf("extracted trace %q, want %q", got, parent.SpanContext().TraceID())
	}
	spans := exp.GetSpans()
	if len(spans) != 2 || spans[0].Name != "child" || spans[0].Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("spans = %v; want child (of parent), parent", spans.Snapshots())
	}
}

// TestContinueOnly: a plugin records only traces its caller started.
func TestContinueOnly(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewWithExporter(exp, "plugin", tracing.ContinueOnly())
	_, root := tr.Tracer().Start(context.Background(), "root")
	root.End()
	md := metadata.Pairs("traceparent", "00-11111111111111111111111111111111-2222222222222222-01")
	_, cont := tr.Tracer().Start(tr.Extract(context.Background(), md), "continued")
	cont.End()
	if spans := exp.GetSpans(); len(spans) != 1 || spans[0].Name != "continued" {
		t.Errorf("spans = %v; want only the continued one", spans.Snapshots())
	}
}

// TestRegistersNoCompressor: linking tracing must not register gzip with
// gRPC (otlptracegrpc and otlptracehttp do), which makes every gRPC call of
// the process carry and parse grpc-accept-encoding, tracing on or off.
func TestRegistersNoCompressor(t *testing.T) {
	if c := encoding.GetCompressor("gzip"); c != nil {
		t.Fatal("gzip is registered with gRPC in a binary that links proto/tracing: every call of the process now advertises it (5 allocations per proxied call)")
	}
}
