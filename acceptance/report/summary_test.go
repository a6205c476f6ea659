package report_test

import (
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
)

// TestSummaryNamesAFailuresTrace: a failed spec's trace id is in
// summary.md, to look it up; without tracing there is no Trace line.
func TestSummaryNamesAFailuresTrace(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := &report.Report{Specs: []report.Spec{
		{Suite: "KeyValue", Capability: "keyvalue.basic", Name: "traced", Outcome: report.Failed, Reason: "got X, want Y", TraceID: id},
		{Suite: "KeyValue", Capability: "keyvalue.basic", Name: "untraced", Outcome: report.Failed, Reason: "got X, want Y"},
	}}
	s := r.Summary()
	if n := strings.Count(s, "Trace: "); n != 1 || !strings.Contains(s, "Trace: `"+id+"`") {
		t.Errorf("summary has %d Trace lines; want one naming %s:\n%s", n, id, s)
	}
}
