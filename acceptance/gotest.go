package acceptance

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/prism-suite/prism/acceptance/report"
)

// Run certifies cfg.Plugin from a plain `go test`: it registers the specs
// (with [Register]), runs them, writes the report files into cfg.ReportDir
// when set, and fails t exactly when prism-accept would exit non-zero for the
// same run (see report.Judge). It calls RunSpecs, so call it once per test binary:
//
//	func TestMyPlugin(t *testing.T) {
//		cfg := acceptance.DefaultConfig()
//		cfg.Plugin, cfg.Backend = "./bin/my-plugin", "redis"
//		acceptance.Run(t, cfg)
//	}
//
// Ginkgo's flags work as usual (go test -args -ginkgo.focus=...).
func Run(t *testing.T, cfg Config) *report.Report {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	run := Register(cfg)
	gomega.RegisterFailHandler(Fail)
	suiteCfg, repCfg := GinkgoConfiguration()
	suiteCfg.RandomSeed = cfg.Seed
	// With OTEL_EXPORTER_OTLP_ENDPOINT set, each spec's trace id goes into
	// the report, as with prism-accept --otlp-endpoint.
	stopTracing, err := startTracing("")
	if err != nil {
		t.Fatal(err)
	}
	defer stopTracing()
	// The verdicts decide, not Ginkgo: a failed probe of an undeclared
	// capability, for one, is no failure.
	RunSpecs(&testingT{}, SuiteDescription, suiteCfg, repCfg)
	if run.Report == nil {
		t.Fatal("prism acceptance: the suite ended without a report")
	}
	// t fails exactly when prism-accept would exit non-zero for this run.
	if run.Report.ExitCode != report.ExitOK {
		for _, c := range run.Report.Capabilities {
			if c.Verdict == report.VerdictFail || c.Verdict == report.VerdictError {
				t.Errorf("%s: %s %s", c.Name, c.Verdict, c.Reason)
			}
		}
		t.Errorf("prism acceptance: exit %d: %s", run.Report.ExitCode, run.Report.ExitReason)
	}
	return run.Report
}
