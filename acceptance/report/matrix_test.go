package report_test

import (
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
)

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{
		{nil, 0}, {[]int{0, 0}, 0}, {[]int{0, 2, 0}, 2}, {[]int{2, 1, 2}, 1}, {[]int{64, 2}, 2}, {[]int{0, 64}, 64},
		{[]int{3, 0}, 3}, {[]int{3, 64}, 64}, {[]int{1, 64, 2, 3}, 1},
	} {
		if got := report.Worst(tc.codes...); got != tc.want {
			t.Errorf("Worst(%v) = %d, want %d", tc.codes, got, tc.want)
		}
	}
}

func TestMatrixShowsEveryRun(t *testing.T) {
	a := &report.Report{Plugin: report.Plugin{Name: "memstore"}, Via: "both", Capabilities: []report.Capability{{Name: "lifecycle", Verdict: report.Certified}}}
	b := &report.Report{Plugin: report.Plugin{Name: "redis"}, Via: "direct", ExitCode: 1, ExitReason: "failed: keyvalue.ttl",
		Capabilities: []report.Capability{{Name: "lifecycle", Verdict: report.Certified}, {Name: "keyvalue.ttl", Verdict: report.VerdictFail}}}
	m := report.Matrix([]*report.Report{a, b})
	for _, want := range []string{"[1] memstore", "[2] redis", "exit 1: failed: keyvalue.ttl", "keyvalue.ttl             -             FAILED"} {
		if !strings.Contains(m, want) {
			t.Errorf("matrix lacks %q:\n%s", want, m)
		}
	}
}
