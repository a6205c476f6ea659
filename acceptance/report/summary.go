package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Summary renders summary.md: the verdict table first, then failures and
// errors with their reproduce commands. It fits a CI step summary.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Prism acceptance: %s %s (%s, %s)\n\n", r.Plugin.Name, r.Plugin.Version, r.Backend.Kind, r.Via)
	fmt.Fprintf(&b, "| capability | verdict | passed | failed | skipped | errors |\n|---|---|---:|---:|---:|---:|\n")
	for _, c := range r.Capabilities {
		v := string(c.Verdict)
		if c.Reason != "" {
			first, _, more := strings.Cut(c.Reason, "\n")
			if more {
				first += " …"
			}
			v += " (" + first + ")"
		}
		fmt.Fprintf(&b, "| `%s` | %s %s | %d | %d | %d | %d |\n", c.Name, icon(c.Verdict), v, c.Passed, c.Failed, c.Skipped, c.Errors)
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed, %d skipped, %d disabled, %d errors in %.1fs. ",
		r.Totals.Passed, r.Totals.Failed, r.Totals.Skipped, r.Totals.Disabled, r.Totals.Errors, float64(r.DurationMS)/1000)
	fmt.Fprintf(&b, "Backend: %s via %s", r.Backend.Kind, r.Backend.Provider)
	if r.Backend.Image != "" {
		fmt.Fprintf(&b, " (`%s`)", r.Backend.Image)
	}
	if r.Backend.ServerVersion != "" {
		fmt.Fprintf(&b, " server %s", r.Backend.ServerVersion)
	}
	if r.Plugin.Mode == ModeBuiltin {
		fmt.Fprintf(&b, ". Plugin: builtin driver `%s` of `%s`, sha256 `%.12s`, seed %d.\n", r.Plugin.Builtin, r.Plugin.Binary, r.Plugin.SHA256, r.Seed)
	} else {
		fmt.Fprintf(&b, ". Plugin sha256 `%.12s`, seed %d.\n", r.Plugin.SHA256, r.Seed)
	}
	if r.ExitCode != ExitOK {
		fmt.Fprintf(&b, "\n**Exit %d**: %s\n", r.ExitCode, r.ExitReason)
	}
	for _, c := range r.Capabilities {
		if strings.Contains(c.Reason, "\n") {
			fmt.Fprintf(&b, "\n### `%s`: %s\n\n```\n%s\n```\n", c.Name, c.Verdict, strings.TrimSpace(c.Reason))
		}
	}
	var bad []Spec
	for _, s := range r.Specs {
		if s.Outcome == Failed || s.Outcome == Error {
			bad = append(bad, s)
		}
	}
	if len(bad) > 0 {
		fmt.Fprintf(&b, "\n### Failures and errors\n")
		for _, s := range bad {
			fmt.Fprintf(&b, "\n**%s** `%s` — %s %s\n\n```\n%s\n```\nReproduce:\n```sh\n%s\n```\n",
				s.Outcome, s.Capability, s.Suite, s.Name, strings.TrimSpace(s.Reason), s.Reproduce)
			if s.TraceID != "" {
				fmt.Fprintf(&b, "Trace: `%s`\n", s.TraceID)
			}
		}
	}
	return b.String()
}

func icon(v Verdict) string {
	switch v {
	case Certified:
		return "✅"
	case VerdictFail:
		return "❌"
	case VerdictError:
		return "⚠️"
	default:
		return "➖"
	}
}

// WriteSummary writes summary.md into dir.
func (r *Report) WriteSummary(dir string) (string, error) {
	path := filepath.Join(dir, "summary.md")
	if err := os.WriteFile(path, []byte(r.Summary()), 0o644); err != nil {
		return "", fmt.Errorf("write summary: %w", err)
	}
	return path, nil
}
