package report_test

import (
	"encoding/xml"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
)

func TestJUnitCarriesPrismOutcomes(t *testing.T) {
	r := sample("alpha", map[report.Outcome]int{report.Passed: 3, report.Failed: 2, report.Skipped: 1, report.Disabled: 4, report.Error: 1})
	b, err := r.JUnit()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct {
					Type string `xml:"type,attr"`
				} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, b)
	}
	if doc.Tests != 7 || doc.Failures != 2 || doc.Errors != 1 || doc.Skipped != 1 {
		t.Errorf("tests=%d failures=%d errors=%d skipped=%d; want 7, 2, 1, 1 (disabled specs are left out)", doc.Tests, doc.Failures, doc.Errors, doc.Skipped)
	}
	var failures, errs, skipped int
	for _, c := range doc.Suites[0].Cases {
		if c.Failure != nil {
			failures++
		}
		if c.Error != nil {
			errs++
			if c.Error.Type != "harness error" {
				t.Errorf("error type %q, want harness error", c.Error.Type)
			}
		}
		if c.Skipped != nil {
			skipped++
		}
	}
	if failures != 2 || errs != 1 || skipped != 1 {
		t.Errorf("testcases: %d failures, %d errors, %d skipped; want 2, 1, 1", failures, errs, skipped)
	}
}
