package report

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/prism-suite/prism/proto/capability"
)

// Label names a report's run in one line: plugin, backend, provider, how the
// suites reached it, and its exit code.
func (r *Report) Label() string {
	name := r.Plugin.Name
	if name == "" { // the plugin never described itself
		name = filepath.Base(r.Plugin.Binary)
	}
	return fmt.Sprintf("%s %s, backend %s via %s, %s — exit %d", name, r.Plugin.Version, r.Backend.Kind, r.Backend.Provider, r.Via, r.ExitCode)
}

// Matrix renders the capability × run matrix of reports as text for a
// terminal: a numbered legend of the runs (with each non-zero exit's
// reason), then one row per capability with each run's verdict.
func Matrix(reports []*Report) string {
	var b strings.Builder
	for i, r := range reports {
		fmt.Fprintf(&b, "[%d] %s", i+1, r.Label())
		if r.ExitReason != "" {
			fmt.Fprintf(&b, ": %s", r.ExitReason)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n%-24s", "capability")
	for i := range reports {
		fmt.Fprintf(&b, " %-13s", fmt.Sprintf("[%d]", i+1))
	}
	b.WriteString("\n")
	for _, info := range capability.All() {
		fmt.Fprintf(&b, "%-24s", info.Name)
		for _, r := range reports {
			v := "-"
			if c := cell(r, string(info.Name)); c != nil {
				v = string(c.Verdict)
			}
			if v == string(VerdictFail) || v == string(VerdictError) {
				v = strings.ToUpper(v)
			}
			fmt.Fprintf(&b, " %-13s", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Worst is the exit code of several runs: a failure (1) outranks a harness
// error (2), which outranks a usage error (64), which outranks any other
// non-zero code; 0 only when every run exited 0.
func Worst(codes ...int) int {
	rank := func(c int) int {
		switch c {
		case ExitOK:
			return 0
		case ExitFailed:
			return 4
		case ExitError:
			return 3
		case ExitUsage:
			return 2
		}
		return 1
	}
	worst := ExitOK
	for _, c := range codes {
		if rank(c) > rank(worst) {
			worst = c
		}
	}
	return worst
}
