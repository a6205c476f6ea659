package acceptance_test

import (
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/tracing/otlptest"
)

// TestSpecTraceIDs runs a small focused prism-accept (two KeyValue specs,
// directly and through prism-proxy) with --otlp-endpoint at a receiver in
// this test: every spec's trace_id in report.json is the trace of a root
// span named after the spec, received from prism-accept, in which the
// memstore plugin's spans (and, via proxy, prism-proxy's) continue the
// harness's calls.
func TestSpecTraceIDs(t *testing.T) {
	t.Parallel()
	bin := buildCommands(t)
	rcv := otlptest.Start(t)
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore",
		"--via", "both", "--proxy", filepath.Join(bin, "prism-proxy"), "--otlp-endpoint", rcv.Endpoint(),
		"--label-filter", "keyvalue.basic", "--ginkgo.focus", "returns the value that was set|returns NotFound for a key that was never set")
	if code != report.ExitOK {
		t.Fatalf("exit %d, want 0\n%s", code, out)
	}
	var ran []report.Spec
	for _, s := range rep.Specs {
		if s.Outcome == report.Passed {
			ran = append(ran, s)
		}
	}
	if len(ran) != 4 {
		t.Fatalf("%d specs passed, want 4 (2 direct, 2 via proxy)\n%s", len(ran), out)
	}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for _, s := range ran {
		if !hex32.MatchString(s.TraceID) || seen[s.TraceID] {
			t.Fatalf("spec %q (%s): trace_id %q; want 32 hex digits, one trace per spec", s.Name, s.Via, s.TraceID)
		}
		seen[s.TraceID] = true
		// The harness's call and the plugin's span are there once
		// prism-accept and the plugin have flushed (they exit first).
		isRoot := func(sp otlptest.Span) bool { return sp.ParentID() == "" }
		isPlugin := func(sp otlptest.Span) bool {
			return sp.Service == "prism-memstore" && sp.Kind == tracepb.Span_SPAN_KIND_SERVER
		}
		isProxy := func(sp otlptest.Span) bool { return sp.Service == "prism-proxy" }
		rcv.WaitFor(t, "root, plugin (and proxy) spans of trace "+s.TraceID, 15*time.Second, func([]otlptest.Span) bool {
			tr := rcv.Trace(s.TraceID)
			return slices.ContainsFunc(tr, isRoot) && slices.ContainsFunc(tr, isPlugin) &&
				(s.Via != "proxy" || slices.ContainsFunc(tr, isProxy))
		})
		tr := rcv.Trace(s.TraceID)
		if root := tr[slices.IndexFunc(tr, isRoot)]; root.Service != "prism-accept" || root.Name != s.Name {
			t.Errorf("the root of trace %s is %s; want prism-accept's span named %q", s.TraceID, root, s.Name)
		}
		if s.Via == "direct" && slices.ContainsFunc(tr, isProxy) {
			t.Errorf("spec %q direct: a prism-proxy span in its trace:\n%s", s.Name, otlptest.List(tr))
		}
	}
}
