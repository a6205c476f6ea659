package acceptance

import (
	"context"
	"fmt"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/tracing"
)

// reportEntryTraceID is the report entry that carries a spec's trace id
// from the spec to report.json (report.Spec.TraceID).
const reportEntryTraceID = "prism.trace_id"

// traceSpec runs the spec under a root span of its own, named after it,
// when the harness traces (target.SetTracing): the harness's calls in the
// spec are its children, and the plugin and proxy continue it.
func traceSpec() {
	if target.Tracing() == nil {
		return
	}
	id, end := target.BeginSpec(specName(CurrentSpecReport()))
	AddReportEntry(reportEntryTraceID, id, ReportEntryVisibilityNever)
	DeferCleanup(func() { end(CurrentSpecReport().Failed()) })
}

// startTracing turns the harness's tracing on when endpoint (--otlp-endpoint)
// or the OTEL_* environment names a collector: its own spans (one root
// per spec) go there, and so do those of the plugins and proxies it
// launches, which inherit the endpoint through the environment. It returns
// the function that flushes and stops it; with tracing off, a no-op.
func startTracing(endpoint string) (stop func(), err error) {
	cfg, err := tracing.FromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	if endpoint != "" {
		cfg.Endpoint = endpoint
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--otlp-endpoint: %w", err)
		}
	}
	if !cfg.Enabled() {
		return func() {}, nil
	}
	// The processes prism-accept starts trace to the same endpoint, each
	// under its own service name (not prism-accept's).
	for k, v := range map[string]string{tracing.EnvTracesEndpoint: cfg.Endpoint, tracing.EnvExporter: "otlp", tracing.EnvServiceName: ""} {
		if err := setenv(k, v); err != nil {
			return nil, err
		}
	}
	t, err := tracing.Start(context.Background(), cfg, "prism-accept")
	if err != nil {
		return nil, err
	}
	target.SetTracing(t)
	return func() {
		target.SetTracing(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := t.Shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "prism-accept:", err)
		}
	}, nil
}

func setenv(k, v string) error {
	if v == "" {
		return os.Unsetenv(k)
	}
	return os.Setenv(k, v)
}
