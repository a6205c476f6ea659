// Package report is the one definition of Prism's certification report: the
// schema of report.json (versioned by SchemaVersion), the verdict and outcome
// words, and the writers of report.json, junit.xml and summary.md.
//
// Schema changes that remove or rename a field bump SchemaVersion; new fields
// may be added within a version.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prism-suite/prism/harness/backend"
)

// SchemaVersion is the version of the report.json schema.
const SchemaVersion = "prism.report/v1"

// Outcome is what happened to one spec.
type Outcome string

// The outcomes of a spec.
const (
	Passed  Outcome = "passed"
	Failed  Outcome = "failed"
	Skipped Outcome = "skipped"
	// Disabled: excluded by the label filter or focus.
	Disabled Outcome = "disabled"
	// Error: a harness or infrastructure problem, not a plugin failure.
	Error Outcome = "error"
)

// Verdict is the result for one capability.
type Verdict string

// The verdicts of a capability.
const (
	Certified   Verdict = "certified"
	VerdictFail Verdict = "failed"
	NotDeclared Verdict = "not declared"
	// VerdictError: a harness error kept the capability from being judged.
	VerdictError Verdict = "error"
	// NotTested: not judged: every spec was filtered out or skipped, or the
	// plugin never described itself (Reason says which).
	NotTested Verdict = "not tested"
	// WorksUndeclared: not declared, but every probe of its specs passed
	// (--probe-undeclared). It never fails a run.
	WorksUndeclared Verdict = "works but undeclared"
)

// Report is the content of report.json.
type Report struct {
	Schema       string    `json:"schema"`
	SuiteVersion string    `json:"suite_version"`
	GitCommit    string    `json:"git_commit,omitempty"`
	StartTime    time.Time `json:"start_time"`
	DurationMS   int64     `json:"duration_ms"`
	Seed         int64     `json:"seed"`
	Via          string    `json:"via"`
	LabelFilter  string    `json:"label_filter,omitempty"`
	// Command reproduces the whole run.
	Command string `json:"command"`
	// CommandLeftOut names what shaped the run but is left out of Command and
	// the reproduce commands (environment variables holding secrets): set
	// them yourself before running one.
	CommandLeftOut []string `json:"command_left_out,omitempty"`
	Plugin         Plugin   `json:"plugin"`
	// Proxy identifies the reference proxy the run went through (nil when
	// every spec ran direct).
	Proxy    *Proxy            `json:"proxy,omitempty"`
	Backend  backend.Info      `json:"backend"`
	Timeouts map[string]string `json:"timeouts"`
	// Capabilities holds one verdict per known capability.
	Capabilities []Capability `json:"capabilities"`
	Specs        []Spec       `json:"specs"`
	Totals       Totals       `json:"totals"`
	// Procs is the number of processes the run's specs were split over
	// (prism-accept --procs); 0 or 1: one.
	Procs int `json:"procs,omitempty"`
	// Robustness is set by a robustness run (prism-accept --robustness),
	// which has no specs.
	Robustness *Robustness `json:"robustness,omitempty"`
	// ExitCode is what prism-accept exits with for this report (see Judge).
	ExitCode int `json:"exit_code"`
	// ExitReason says why ExitCode is not 0.
	ExitReason string `json:"exit_reason,omitempty"`
}

// Plugin modes.
const (
	ModeProcess = "process"
	ModeBuiltin = "builtin"
)

// Plugin identifies the plugin under test.
type Plugin struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Mode is how the plugin ran: ModeProcess (a plugin binary) or
	// ModeBuiltin (a driver linked into the proxy; Binary and SHA256 are
	// then the proxy binary's, Builtin the driver's name). Reports written
	// before it existed have none: a process.
	Mode     string            `json:"mode,omitempty"`
	Builtin  string            `json:"builtin,omitempty"`
	Binary   string            `json:"binary"`
	SHA256   string            `json:"sha256"`
	Declared []string          `json:"declared"`
	Info     map[string]string `json:"info,omitempty"`
	// SpawnToServingMS is the time from exec to gRPC health SERVING.
	SpawnToServingMS float64 `json:"spawn_to_serving_ms"`
	// StderrTail is the end of the plugin's stderr (credentials redacted).
	StderrTail string `json:"stderr_tail,omitempty"`
}

// Proxy identifies the prism-proxy binary a run went through.
type Proxy struct {
	Binary string `json:"binary"`
	SHA256 string `json:"sha256"`
	// Version is what the proxy reported when it started ("" when it did
	// not start).
	Version string `json:"version,omitempty"`
}

// Capability is the verdict for one capability.
type Capability struct {
	Name     string  `json:"name"`
	Declared bool    `json:"declared"`
	Required bool    `json:"required"`
	Verdict  Verdict `json:"verdict"`
	Passed   int     `json:"passed"`
	Failed   int     `json:"failed"`
	Skipped  int     `json:"skipped"`
	Errors   int     `json:"errors"`
	// ProbeFailed counts specs of an undeclared capability that were probed
	// and failed (they count as skipped, not failed).
	ProbeFailed int `json:"probe_failed,omitempty"`
	// Reason explains a verdict that is not plain (e.g. required but not declared).
	Reason string `json:"reason,omitempty"`
}

// Spec is one spec's outcome.
type Spec struct {
	Suite      string   `json:"suite"`
	Capability string   `json:"capability"`
	Name       string   `json:"name"`
	Outcome    Outcome  `json:"outcome"`
	Reason     string   `json:"reason,omitempty"`
	Location   string   `json:"location,omitempty"`
	DurationMS float64  `json:"duration_ms"`
	Labels     []string `json:"labels,omitempty"`
	// Reproduce runs this spec alone.
	Reproduce string `json:"reproduce,omitempty"`
	// Via says how the spec reached the plugin: direct or proxy.
	Via string `json:"via,omitempty"`
	// Probe is set on a spec of an undeclared capability that ran anyway.
	Probe bool `json:"probe,omitempty"`
	// Cleanup lists cleanup steps that failed after the spec had already
	// failed (recorded, not counted: the spec's own failure is its outcome).
	Cleanup []string `json:"cleanup,omitempty"`
	// TraceID is the OpenTelemetry trace (32 hex digits) the spec ran
	// under when prism-accept traced (--otlp-endpoint or the OTEL_*
	// environment): its root span is named after the spec, and the
	// harness's calls, the proxy's and the plugin's spans are in it. Look it
	// up in the trace UI to see what a failing spec did. Empty (omitted)
	// when tracing was off.
	TraceID string `json:"trace_id,omitempty"`
	// Nemesis lists the faults a spec injected into a cluster and what it
	// measured meanwhile ("nemesis: {kind, node, injected, healed,
	// recovered}", "calls during the fault: ...").
	Nemesis []string `json:"nemesis,omitempty"`
}

// Totals counts specs by outcome.
type Totals struct {
	Passed   int `json:"passed"`
	Failed   int `json:"failed"`
	Skipped  int `json:"skipped"`
	Disabled int `json:"disabled"`
	Errors   int `json:"errors"`
}

// Add counts one outcome.
func (t *Totals) Add(o Outcome) {
	switch o {
	case Passed:
		t.Passed++
	case Failed:
		t.Failed++
	case Skipped:
		t.Skipped++
	case Disabled:
		t.Disabled++
	case Error:
		t.Errors++
	}
}

// Exit codes of a run; Judge says exactly when each is given.
const (
	// ExitOK: something ran, nothing failed or errored, and every required
	// capability and every declared one the selection reached is certified.
	ExitOK = 0
	// ExitFailed: a spec or a capability failed, a required capability is not
	// certified, or the plugin could not be launched, handshaked or described.
	ExitFailed = 1
	// ExitError: nothing failed, but the harness could not judge something
	// it was asked to (a harness error, or every selected spec of a declared
	// capability was skipped).
	ExitError = 2
	// ExitUsage: the command line or config was wrong, or the selection
	// (label filter, focus) selects no spec this plugin can run.
	ExitUsage = 64
)

// WriteJSON writes report.json into dir.
func (r *Report) WriteJSON(dir string) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode report: %w", err)
	}
	path := filepath.Join(dir, "report.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	return path, nil
}

// Read reads a report.json.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode report %s: %w", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("decode report %s: schema %q, want %q", path, r.Schema, SchemaVersion)
	}
	return &r, nil
}

// Capability returns the verdict of capability name, or nil.
func (r *Report) Capability(name string) *Capability {
	for i := range r.Capabilities {
		if r.Capabilities[i].Name == name {
			return &r.Capabilities[i]
		}
	}
	return nil
}

// Verdict returns the verdict of capability name ("" when unknown).
func (r *Report) Verdict(name string) Verdict {
	if c := r.Capability(name); c != nil {
		return c.Verdict
	}
	return ""
}
