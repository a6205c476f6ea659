package report

import (
	"fmt"
	"strings"

	"github.com/prism-suite/prism/proto/capability"
)

// Run is everything Judge needs to know of one certification run: what the
// plugin declared, what the user required and selected, how setup went, and
// every spec's outcome.
type Run struct {
	// Described says the plugin (or the pattern's slots) described itself,
	// so Declared is known. When false, no capability but lifecycle can be
	// judged.
	Described bool
	// Declared are the capabilities the subject declares (the plugin's
	// Describe, plus the proxy's with --auth). Capabilities every plugin is
	// held to (capability.Info.Required, i.e. lifecycle) count as declared.
	Declared capability.Set
	// Required are the capabilities the user requires (--require): each must
	// be certified, whatever else happens.
	Required capability.Set
	// Selection is the label filter and focus as the user gave them, for
	// messages; "" when the run selected every spec.
	Selection string
	// Setup is set when the run could not set up what it certifies.
	Setup *SetupFailure
	// Specs are the outcomes of every spec of the suite, selected or not
	// (a spec the selection excluded is Disabled). A probe whose spec failed
	// is Skipped with Probe set; it never fails a run.
	Specs []Spec
}

// SetupFailure is why a run could not set up what it certifies.
type SetupFailure struct {
	// Outcome is Failed when the subject is to blame (the plugin could not
	// launch, handshake, Describe, Initialize or Start) and Error when the
	// harness is (the backend did not start).
	Outcome Outcome
	// Message says what failed, with the plugin's stderr tail when there is one.
	Message string
}

// Judge is the one verdict function. It turns a run into a verdict per known
// capability and the run's exit code, with the reason for a non-zero code.
//
// The contract, each clause a test in verdict_test.go:
//   - A selection that selects no spec is a usage error: ExitUsage, naming
//     the selection. Nothing else is judged.
//   - A run whose setup failed because of the plugin has lifecycle "failed"
//     with the setup message (launch error and stderr tail), ExitFailed; a
//     setup the harness could not do has lifecycle "error", ExitError. The
//     other capabilities are "not tested": what the plugin declares is unknown.
//     Specs that ran although nothing described the plugin are a harness error.
//   - A declared capability is "failed" when one of its specs failed, else
//     "error" when one reported a harness error, else "certified" when one
//     passed (its reason counts the selected specs that were skipped: a check
//     that cannot measure skips, it never passes), else "not tested" (saying whether the selection excluded its
//     specs or every selected one was skipped, and why).
//   - An undeclared capability is "not declared", or "works but undeclared"
//     when its specs were probed and every probe passed.
//   - A required capability that is not certified is "failed", whatever the
//     reason, and the reason says which ("required, but not declared").
//   - The exit code is ExitOK only if no spec failed or errored, at least one
//     spec (not a probe) passed, every required capability is certified, and
//     every declared capability with a selected spec is certified. Any failed
//     spec or verdict gives ExitFailed; otherwise any harness error, or a
//     declared capability whose selected specs were all skipped, gives
//     ExitError; a run where every selected spec was a skipped spec of an
//     undeclared capability gives ExitUsage (the selection certifies nothing
//     this plugin declares).
func Judge(run Run) (caps []Capability, exit int, why string) {
	selected := 0
	for _, s := range run.Specs {
		if s.Outcome != Disabled {
			selected++
		}
	}
	if selected == 0 {
		sel := run.Selection
		if sel == "" {
			sel = "the whole suite"
		}
		return notJudged(run, "nothing selected"), ExitUsage, fmt.Sprintf("%s selects no spec", sel)
	}
	if !run.Described && run.Setup == nil {
		// Specs ran but setup never described the plugin: the harness lost track.
		run.Setup = &SetupFailure{Outcome: Error, Message: "harness: specs ran but the plugin was never described"}
	}
	for _, info := range capability.All() {
		caps = append(caps, judgeOne(run, info))
	}
	t := tallyOf(run, caps)
	return caps, t.exit(), t.why()
}

// notJudged is every capability "not tested" with reason.
func notJudged(run Run, reason string) []Capability {
	var caps []Capability
	for _, info := range capability.All() {
		caps = append(caps, Capability{Name: string(info.Name), Declared: declares(run, info), Required: run.Required.Has(info.Name),
			Verdict: NotTested, Reason: reason})
	}
	return caps
}

func declares(run Run, info capability.Info) bool {
	return info.Required || run.Declared.Has(info.Name)
}

func judgeOne(run Run, info capability.Info) Capability {
	c := Capability{Name: string(info.Name), Declared: declares(run, info), Required: run.Required.Has(info.Name)}
	total, selected, firstSkip := 0, 0, ""
	for _, s := range run.Specs {
		if s.Capability != c.Name {
			continue
		}
		total++
		if s.Outcome != Disabled {
			selected++
		}
		switch s.Outcome {
		case Passed:
			c.Passed++
		case Failed:
			c.Failed++
		case Skipped:
			c.Skipped++
			if s.Probe {
				c.ProbeFailed++
			}
			if firstSkip == "" {
				firstSkip = s.Reason
			}
		case Error:
			c.Errors++
		}
	}
	switch {
	case run.Setup != nil && info.Name == capability.Lifecycle:
		c.Verdict = VerdictError
		if run.Setup.Outcome == Failed {
			c.Verdict = VerdictFail
		}
		c.Reason = run.Setup.Message
	case !run.Described:
		c.Verdict, c.Reason = NotTested, "not judged: the plugin never described itself"
	case !c.Declared && c.Passed > 0 && c.ProbeFailed == 0:
		c.Verdict = WorksUndeclared
	case !c.Declared:
		c.Verdict = NotDeclared
	case c.Failed > 0:
		c.Verdict = VerdictFail
	case c.Errors > 0:
		c.Verdict = VerdictError
	case c.Passed > 0:
		c.Verdict = Certified
		if c.Skipped > 0 {
			c.Reason = fmt.Sprintf("%d of %d selected specs skipped (first: %s)", c.Skipped, selected, firstSkip)
		}
	case total == 0 && info.Suite == RobustnessSuite:
		c.Verdict, c.Reason = NotTested, "judged by a robustness run (prism-accept --robustness), not by specs"
	case total == 0:
		c.Verdict, c.Reason = NotTested, "this run has no spec of it"
	case selected == 0:
		c.Verdict, c.Reason = NotTested, "excluded by the selection"
		if run.Selection != "" {
			c.Reason += " " + run.Selection
		}
	default:
		c.Verdict, c.Reason = NotTested, fmt.Sprintf("all %d selected specs were skipped (first: %s)", selected, firstSkip)
	}
	if c.Required && c.Verdict != Certified {
		what := string(c.Verdict)
		if c.Reason != "" {
			what += ": " + c.Reason
		}
		c.Verdict, c.Reason = VerdictFail, "required, but "+what
	}
	return c
}

// tally is what the exit code and its reason are computed from.
type tally struct {
	failedCaps, errorCaps, unmeasuredCaps []string
	failed, errors, passed                int // specs; passed counts no probe
}

func tallyOf(run Run, caps []Capability) tally {
	var t tally
	for _, s := range run.Specs {
		switch {
		case s.Outcome == Passed && !s.Probe:
			t.passed++
		case s.Outcome == Failed:
			t.failed++
		case s.Outcome == Error:
			t.errors++
		}
	}
	for _, c := range caps {
		switch {
		case c.Verdict == VerdictFail:
			t.failedCaps = append(t.failedCaps, c.Name)
		case c.Verdict == VerdictError:
			t.errorCaps = append(t.errorCaps, c.Name)
		case c.Declared && c.Verdict == NotTested && c.Skipped > 0:
			// Declared, some specs selected, none ran.
			t.unmeasuredCaps = append(t.unmeasuredCaps, c.Name)
		}
	}
	return t
}

func (t tally) exit() int {
	switch {
	case t.failed > 0 || len(t.failedCaps) > 0:
		return ExitFailed
	case t.errors > 0 || len(t.errorCaps) > 0 || len(t.unmeasuredCaps) > 0:
		return ExitError
	case t.passed == 0:
		return ExitUsage
	}
	return ExitOK
}

// why says in one line why the exit code is not ExitOK ("" when it is).
func (t tally) why() string {
	var parts []string
	if len(t.failedCaps) > 0 {
		parts = append(parts, "failed: "+strings.Join(t.failedCaps, ", "))
	}
	if t.failed > 0 {
		parts = append(parts, fmt.Sprintf("%d specs failed", t.failed))
	}
	if len(t.errorCaps) > 0 {
		parts = append(parts, "harness error: "+strings.Join(t.errorCaps, ", "))
	}
	if t.errors > 0 {
		parts = append(parts, fmt.Sprintf("%d specs reported a harness error", t.errors))
	}
	if len(t.unmeasuredCaps) > 0 {
		parts = append(parts, "declared but not measured (every selected spec was skipped): "+strings.Join(t.unmeasuredCaps, ", "))
	}
	if len(parts) == 0 && t.passed == 0 {
		parts = append(parts, "no spec ran: every selected spec belongs to a capability this plugin does not declare")
	}
	return strings.Join(parts, "; ")
}
