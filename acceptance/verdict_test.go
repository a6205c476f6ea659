package acceptance_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

// TestExitCodesAtTheEdges runs prism-accept where a careless verdict says
// green: a plugin that exits at launch, a required capability the selection
// leaves out, a focus that selects nothing, a selection of only undeclared
// capabilities.
func TestExitCodesAtTheEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept")
	}
	bin := buildCommands(t)
	dead := filepath.Join(t.TempDir(), "dead-plugin")
	if err := os.WriteFile(dead, []byte("#!/bin/sh\necho 'cannot open /etc/my-plugin.conf' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	memstore := filepath.Join(bin, "prism-memstore")

	t.Run("a plugin that exits at launch fails lifecycle", func(t *testing.T) {
		for _, extra := range [][]string{nil, {"--require", "keyvalue.basic"}} {
			rep, code, out := accept(t, bin, append([]string{"--plugin", dead, "--backend", "memstore"}, extra...)...)
			if code != report.ExitFailed || rep.ExitCode != report.ExitFailed {
				t.Errorf("%v: exit %d (report %d), want 1\n%s", extra, code, rep.ExitCode, out)
			}
			if v := rep.Verdict(string(capability.Lifecycle)); v != report.VerdictFail {
				t.Errorf("%v: lifecycle %q, want failed", extra, v)
			}
			for _, c := range rep.Capabilities {
				if c.Name == string(capability.Lifecycle) && !(strings.Contains(c.Reason, "exit status 3") && strings.Contains(c.Reason, "cannot open /etc/my-plugin.conf")) {
					t.Errorf("lifecycle reason %q lacks the launch error and the stderr tail", c.Reason)
				}
			}
			summary, err := os.ReadFile(filepath.Join(filepath.Dir(reportPath(t, out)), "summary.md"))
			if err != nil || !strings.Contains(string(summary), "cannot open /etc/my-plugin.conf") {
				t.Errorf("summary.md does not show the stderr tail (%v):\n%s", err, summary)
			}
		}
	})
	t.Run("a plugin that prints 10 MB and exits leaves small reports", func(t *testing.T) {
		loud := filepath.Join(t.TempDir(), "loud-plugin")
		if err := os.WriteFile(loud, []byte("#!/bin/sh\nhead -c 10000000 /dev/zero | tr '\\0' x >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		rep, code, out := accept(t, bin, "--plugin", loud, "--backend", "memstore")
		if code != report.ExitFailed || rep.Verdict(string(capability.Lifecycle)) != report.VerdictFail {
			t.Errorf("exit %d, lifecycle %q; want 1, failed", code, rep.Verdict(string(capability.Lifecycle)))
		}
		dir := filepath.Dir(reportPath(t, out))
		var total int64
		for _, f := range []string{"report.json", "junit.xml", "summary.md", "report.html"} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			total += fi.Size()
		}
		if total > 4<<20 || len(out) > 1<<20 {
			t.Errorf("reports hold %d bytes and the output %d bytes for a plugin that printed 10 MB; want under 4 MiB and 1 MiB", total, len(out))
		}
	})
	t.Run("a required capability the label filter leaves out fails the run", func(t *testing.T) {
		rep, code, out := accept(t, bin, "--plugin", memstore, "--require", "keyvalue.ttl", "--label-filter", "lifecycle")
		if code != report.ExitFailed || rep.Verdict("keyvalue.ttl") != report.VerdictFail {
			t.Errorf("exit %d, keyvalue.ttl %q; want 1, failed\n%s", code, rep.Verdict("keyvalue.ttl"), out)
		}
	})
	t.Run("a focus that selects no spec is a usage error", func(t *testing.T) {
		_, code, out := accept(t, bin, "--plugin", memstore, "--ginkgo.focus", "nothing is called xyzzy")
		if code != report.ExitUsage || !strings.Contains(out, `focus "nothing is called xyzzy" selects no spec`) {
			t.Errorf("exit %d, want 64 naming the focus\n%s", code, out)
		}
	})
	t.Run("a selection of undeclared capabilities certifies nothing", func(t *testing.T) {
		_, code, out := accept(t, bin, "--plugin", memstore, "--label-filter", "pubsub.durable")
		if code != report.ExitUsage {
			t.Errorf("exit %d, want 64\n%s", code, out)
		}
	})
	t.Run("a passing run whose reports cannot be written exits 2", func(t *testing.T) {
		blocker := filepath.Join(t.TempDir(), "reports")
		if err := os.WriteFile(blocker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// With --procs 2 the run stops before any spec, when it cannot
		// make the folder its processes write into.
		for procs, why := range map[string]string{"1": "write the report files", "2": "not a directory"} {
			out, err := exec.Command(filepath.Join(bin, "prism-accept"), "--plugin", memstore, "--label-filter", "lifecycle",
				"--procs", procs, "--report-dir", filepath.Join(blocker, "sub")).CombinedOutput()
			if code := exitCode(t, err); code != report.ExitError || !strings.Contains(string(out), why) {
				t.Errorf("--procs %s: exit %d, want 2 saying %q\n%s", procs, code, why, out)
			}
		}
	})
	t.Run("an invalid label filter is a usage error", func(t *testing.T) {
		out, err := exec.Command(filepath.Join(bin, "prism-accept"), "--plugin", memstore, "--label-filter", "keyvalue.ttl &&", "--report-dir", t.TempDir()).CombinedOutput()
		if code := exitCode(t, err); code != report.ExitUsage {
			t.Errorf("exit %d, want 64\n%s", code, out)
		}
	})
}

// TestReproduceCommandsRerunTheirSpec takes a real failing run's report (a
// mutant through the proxy and directly, so the same spec runs twice), runs
// the reproduce command of a failed spec of each way as a shell would, and
// requires that exactly that spec ran, with the same outcome.
func TestReproduceCommandsRerunTheirSpec(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept")
	}
	bin := buildCommands(t)
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), "--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant=lost-delete",
		"--via", "both", "--proxy", filepath.Join(bin, "prism-proxy"), "--label-filter", "keyvalue.basic && !proxy", "--report-dir", dir)
	cmd.Env = append(os.Environ(), "PRISM_LOG_LEVEL=warn")
	out, err := cmd.CombinedOutput()
	if code := exitCode(t, err); code != report.ExitFailed {
		t.Fatalf("the mutant run exited %d, want 1\n%s", code, out)
	}
	rep, err := report.Read(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Command, "PRISM_LOG_LEVEL=warn") || !strings.Contains(rep.Command, "--plugin-arg=--mutant=lost-delete") {
		t.Errorf("the run's command drops what shaped it: %s", rep.Command)
	}
	picked := map[string]report.Spec{}
	for _, s := range rep.Specs {
		if s.Outcome == report.Failed && picked[s.Via].Name == "" {
			picked[s.Via] = s
		}
	}
	if len(picked) != 2 {
		t.Fatalf("want a failed spec each way (direct and proxy), got %v\n%s", picked, out)
	}
	for via, s := range picked {
		t.Run(via, func(t *testing.T) {
			if !strings.Contains(s.Reproduce, "--report-dir="+filepath.Join(dir, "reproduce")) {
				t.Fatalf("reproduce command %q does not write its own reports", s.Reproduce)
			}
			rout, err := exec.Command("sh", "-c", s.Reproduce).CombinedOutput()
			if code := exitCode(t, err); code != report.ExitFailed {
				t.Errorf("reproduce exited %d, want 1\n%s", code, rout)
			}
			again, err := report.Read(filepath.Join(dir, "reproduce", "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			var ran []report.Spec
			for _, r := range again.Specs {
				if r.Outcome != report.Disabled {
					ran = append(ran, r)
				}
			}
			if len(ran) != 1 || ran[0].Name != s.Name || ran[0].Via != s.Via || ran[0].Outcome != s.Outcome {
				t.Errorf("reproduce of %q (%s, %s) ran %d specs: %+v\ncommand: %s\n%s", s.Name, s.Via, s.Outcome, len(ran), ran, s.Reproduce, rout)
			}
		})
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

// reportPath finds the report.json path prism-accept printed.
func reportPath(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if dir, ok := strings.CutPrefix(line, "reports: "); ok {
			dir, _, _ = strings.Cut(dir, "/{")
			return filepath.Join(dir, "report.json")
		}
	}
	t.Fatalf("no reports line in\n%s", out)
	return ""
}
