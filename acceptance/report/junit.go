package report

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// junit.xml is written from the Prism report rather than by Ginkgo's JUnit
// reporter, so that it carries Prism's outcomes: a harness error is an
// <error>, not a <failure>, and a probe of an undeclared capability that
// fails is <skipped>, not a failure.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

func seconds(ms float64) string { return fmt.Sprintf("%.3f", ms/1000) }

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// JUnit renders the report as JUnit XML: one testsuite per run, one
// testcase per spec, classname "<suite>.<capability>".
func (r *Report) JUnit() ([]byte, error) {
	s := junitSuite{
		Name:      fmt.Sprintf("Prism acceptance: %s %s (%s via %s, %s)", r.Plugin.Name, r.Plugin.Version, r.Backend.Kind, r.Backend.Provider, r.Via),
		Time:      seconds(float64(r.DurationMS)),
		Timestamp: r.StartTime.UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{
			{"plugin.binary", r.Plugin.Binary}, {"plugin.sha256", r.Plugin.SHA256}, {"plugin.mode", r.Plugin.Mode}, {"plugin.builtin", r.Plugin.Builtin}, {"backend.provider", string(r.Backend.Provider)},
			{"backend.image", r.Backend.Image}, {"seed", fmt.Sprint(r.Seed)}, {"suite.version", r.SuiteVersion}, {"command", r.Command},
		},
	}
	for _, sp := range r.Specs {
		if sp.Outcome == Disabled {
			continue
		}
		c := junitCase{Name: sp.Name, Classname: strings.TrimSuffix(sp.Suite+"."+sp.Capability, "."), Time: seconds(sp.DurationMS)}
		detail := strings.TrimSpace(sp.Reason)
		if sp.Location != "" {
			detail += "\n\nat " + sp.Location
		}
		if sp.Reproduce != "" {
			detail += "\n\nreproduce: " + sp.Reproduce
		}
		switch sp.Outcome {
		case Failed:
			c.Failure = &junitProblem{Message: firstLine(sp.Reason), Type: "failed", Text: detail}
			s.Failures++
		case Error:
			c.Error = &junitProblem{Message: firstLine(sp.Reason), Type: "harness error", Text: detail}
			s.Errors++
		case Skipped:
			c.Skipped = &junitSkipped{Message: firstLine(sp.Reason)}
			s.Skipped++
		}
		s.Tests++
		s.Cases = append(s.Cases, c)
	}
	all := junitSuites{Name: "Prism acceptance", Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped,
		Time: s.Time, Suites: []junitSuite{s}}
	b, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode junit: %w", err)
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

// WriteJUnit writes junit.xml into dir.
func (r *Report) WriteJUnit(dir string) (string, error) {
	b, err := r.JUnit()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "junit.xml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write junit: %w", err)
	}
	return path, nil
}
