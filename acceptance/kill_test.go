package acceptance_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

// kill is what one mutant run must show to count as a kill: the base works
// (lifecycle certified, at least one spec of the witness capability passed)
// and the specs expected to catch the defect failed. Without the first half
// a mutant whose base cannot even start would be counted killed.
type kill struct {
	// specs must each be in the report with outcome failed (matched against
	// report.Spec.Name).
	specs []string
	// witness is the capability that needs at least one passed spec; ""
	// means the capability the mutant breaks. It is another one only when
	// the defect fails every spec of the capability it breaks (the run then
	// adds the witness's specs).
	witness capability.Name
}

// witnessOr returns k.witness, or breaks when it is "".
func (k kill) witnessOr(breaks capability.Name) capability.Name {
	if k.witness != "" {
		return k.witness
	}
	return breaks
}

// labelFilter selects the specs of a mutant run: lifecycle (when the run
// has lifecycle specs), the capability the mutant breaks, and the witness.
func (k kill) labelFilter(breaks capability.Name, lifecycle bool) string {
	terms := []string{string(breaks)}
	if w := k.witnessOr(breaks); w != breaks {
		terms = append(terms, string(w))
	}
	if lifecycle {
		terms = append([]string{string(capability.Lifecycle)}, terms...)
	}
	return strings.Join(terms, " || ")
}

// checkKill reports, as test errors, every way rep falls short of a kill of
// the mutant called name that breaks breaks: exit code 1 with the verdict of
// breaks failed, lifecycle certified (when lifecycle is true: a registry
// pattern run registers no lifecycle specs), a passed spec of the witness,
// and every spec of k failed. It returns the verdict of breaks.
func checkKill(t *testing.T, name string, breaks capability.Name, k kill, lifecycle bool, rep *report.Report, code int, out string) report.Verdict {
	t.Helper()
	var problems []string
	if v := rep.Verdict(string(breaks)); v != report.VerdictFail || code != report.ExitFailed {
		problems = append(problems, fmt.Sprintf("survived: verdict for %s = %q, exit %d; want %q, exit %d", breaks, v, code, report.VerdictFail, report.ExitFailed))
	}
	// (A mutant that breaks lifecycle itself proves its base through the
	// lifecycle specs that passed: the witness below.)
	if v := rep.Verdict(string(capability.Lifecycle)); lifecycle && breaks != capability.Lifecycle && v != report.Certified {
		problems = append(problems, fmt.Sprintf("the base did not start cleanly: lifecycle %q, want %q", v, report.Certified))
	}
	w := k.witnessOr(breaks)
	if c, ok := capabilityOf(rep, string(w)); !ok || c.Passed == 0 {
		problems = append(problems, fmt.Sprintf("no spec of %s passed (got %d), want at least one: the base must work for a failure to be the defect's", w, c.Passed))
	}
	if len(k.specs) == 0 {
		problems = append(problems, "the kill table names no spec that must fail")
	}
	for _, name := range k.specs {
		if o, ok := outcomeOf(rep, name); o != report.Failed {
			if !ok {
				o = "not in the report"
			}
			problems = append(problems, fmt.Sprintf("spec %q: outcome %q, want %q", name, o, report.Failed))
		}
	}
	if len(problems) > 0 {
		t.Errorf("mutant %q is not proven killed:\n  %s\nfailed specs: %s\n%s", name, strings.Join(problems, "\n  "), strings.Join(failedSpecs(rep), "; "), out)
	}
	return rep.Verdict(string(breaks))
}

// capabilityOf returns the report's entry for capability name.
func capabilityOf(rep *report.Report, name string) (report.Capability, bool) {
	for _, c := range rep.Capabilities {
		if c.Name == name {
			return c, true
		}
	}
	return report.Capability{}, false
}

// outcomeOf returns the outcome of the spec called name.
func outcomeOf(rep *report.Report, name string) (report.Outcome, bool) {
	for _, s := range rep.Specs {
		if s.Name == name {
			return s.Outcome, true
		}
	}
	return "", false
}

// failedSpecs returns the names of the specs that failed, with their
// capability.
func failedSpecs(rep *report.Report) []string {
	var out []string
	for _, s := range rep.Specs {
		if s.Outcome == report.Failed {
			out = append(out, fmt.Sprintf("[%s] %s", s.Capability, s.Name))
		}
	}
	return out
}

// killMatrix collects one line per mutant from parallel subtests; String
// returns them sorted.
type killMatrix struct {
	mu    sync.Mutex
	lines []string
}

func (m *killMatrix) add(line string) {
	m.mu.Lock()
	m.lines = append(m.lines, line)
	m.mu.Unlock()
}

func (m *killMatrix) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	lines := append([]string(nil), m.lines...)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
