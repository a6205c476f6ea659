package acceptance_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/reference/registry/registrymutant"
)

// buildCommands builds prism-accept and the plugins once per test binary run.
func buildCommands(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/prism-accept", "../backends/memstore/cmd/prism-memstore", "../backends/mutant/cmd/prism-mutant", "../reference/cmd/prism-proxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build commands: %v\n%s", err, out)
	}
	return dir
}

// buildMutantCommands is buildCommands with prism-proxy built with -tags
// prism_mutants: the only build that holds the proxy's auth and registry
// defects and reads PRISM_AUTH_MUTANT and PRISM_REGISTRY_MUTANT. It stays
// bin/prism-proxy because a registry run finds its slot plugins next to it.
func buildMutantCommands(t *testing.T) string {
	t.Helper()
	dir := buildCommands(t)
	cmd := exec.Command("go", "build", "-tags", "prism_mutants", "-o", dir+"/", "../reference/cmd/prism-proxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build prism-proxy -tags prism_mutants: %v\n%s", err, out)
	}
	return dir
}

// accept runs prism-accept and returns its report and exit code.
func accept(t *testing.T, bin string, args ...string) (*report.Report, int, string) {
	t.Helper()
	reportDir := t.TempDir()
	args = append(args, "--report-dir", reportDir)
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run prism-accept: %v", err)
	}
	rep, err := report.Read(filepath.Join(reportDir, "report.json"))
	if err != nil {
		t.Fatalf("prism-accept %s wrote no readable report (exit %d): %v\n%s", strings.Join(args, " "), code, err, out)
	}
	for _, f := range []string{"junit.xml", "summary.md"} {
		if _, err := os.Stat(filepath.Join(reportDir, f)); err != nil {
			t.Errorf("report file missing: %v", err)
		}
	}
	return rep, code, string(out)
}

// TestMutantsAreKilled runs the suites against every mutant, each wrapped
// around its base plugin (memstore, or nats on an embedded server), and
// requires the verdict of the capability the mutant breaks to be "failed",
// with exit code 1. A surviving mutant means a spec is missing or too weak.
func TestMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suites once per mutant")
	}
	bin := buildCommands(t)
	var matrix []string
	for _, m := range mutant.All() {
		t.Run(m.Name, func(t *testing.T) {
			args := []string{"--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant=" + m.Name,
				"--plugin-arg=--base=" + m.BaseOrDefault(), "--backend", m.BaseOrDefault(), "--label-filter", string(m.Breaks)}
			if m.BaseOrDefault() != "memstore" {
				// A hermetic backend: no container image or server binary needed.
				args = append(args, "--instance", "embedded")
			}
			if m.Breaks.Family() == "pubsub" {
				// A lost message makes a spec wait for it until Eventually's
				// deadline; a shorter one kills the mutant sooner.
				args = append(args, "--timeout-eventually", "5s")
			}
			rep, code, out := accept(t, bin, args...)
			verdict := rep.Verdict(string(m.Breaks))
			matrix = append(matrix, fmt.Sprintf("%-24s %-16s %-9s %s", m.Name, m.Breaks, m.BaseOrDefault(), verdict))
			if verdict != report.VerdictFail || code != report.ExitFailed {
				t.Errorf("mutant %q (%s) survived: verdict for %s = %q, exit %d; want failed, exit 1\n%s", m.Name, m.Defect, m.Breaks, verdict, code, out)
			}
		})
	}
	t.Logf("kill matrix:\n%s", strings.Join(matrix, "\n"))
}

// TestMemstoreIsCertified is the control: the unbroken plugin passes the same run.
func TestMemstoreIsCertified(t *testing.T) {
	bin := buildCommands(t)
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore")
	if code != report.ExitOK {
		t.Fatalf("exit %d, want 0\n%s", code, out)
	}
	for _, c := range rep.Capabilities {
		want := report.Certified
		if c.Name == "pubsub.durable" || strings.HasPrefix(c.Name, "registry.") || strings.HasPrefix(c.Name, "auth.") { // memstore keeps nothing across a restart, and says so; the registry is the proxy's; auth.* need --auth and a backend
			want = report.NotDeclared
		}
		if c.Verdict != want {
			t.Errorf("%s: verdict %q, want %q", c.Name, c.Verdict, want)
		}
	}
	if rep.Plugin.SHA256 == "" || rep.Plugin.Name != "memstore" || rep.Schema != report.SchemaVersion || len(rep.Specs) == 0 {
		t.Errorf("report lacks required fields: %+v", rep.Plugin)
	}
}

// TestProbeFindsUndeclaredCapability checks the three-way cross-check: a
// plugin that implements keyvalue.ttl without declaring it is reported as
// "works but undeclared" with --probe-undeclared (and the run passes), as
// "not declared" without it, and fails the run when --require names it.
func TestProbeFindsUndeclaredCapability(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suites three times")
	}
	bin := buildCommands(t)
	args := []string{"--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant=undeclared-ttl", "--backend", "memstore",
		"--label-filter", "keyvalue.ttl"}

	rep, code, out := accept(t, bin, append(args, "--probe-undeclared")...)
	if v := rep.Verdict("keyvalue.ttl"); v != report.WorksUndeclared || code != report.ExitOK {
		t.Errorf("with --probe-undeclared: keyvalue.ttl %q, exit %d; want %q, exit 0\n%s", v, code, report.WorksUndeclared, out)
	}
	rep, code, out = accept(t, bin, args...)
	if v := rep.Verdict("keyvalue.ttl"); v != report.NotDeclared || code != report.ExitOK {
		t.Errorf("without probes: keyvalue.ttl %q, exit %d; want %q, exit 0\n%s", v, code, report.NotDeclared, out)
	}
	rep, code, out = accept(t, bin, append(args, "--require", "keyvalue.ttl")...)
	if v := rep.Verdict("keyvalue.ttl"); v != report.VerdictFail || code != report.ExitFailed {
		t.Errorf("with --require keyvalue.ttl: %q, exit %d; want failed, exit 1\n%s", v, code, out)
	}
}

// TestRegistryMutantsAreKilled runs the registry suite through prism-proxy
// (memstore slots) once per registry mutant, which the proxy builds into its
// coordinators when PRISM_REGISTRY_MUTANT names it (a prism_mutants build
// only), with only the specs of
// the mutant's topic, and requires the verdict of the capability the mutant
// breaks to be "failed", with exit code 1.
func TestRegistryMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the registry suite once per mutant")
	}
	bin := buildMutantCommands(t)
	var matrix []string
	for _, m := range registrymutant.All() {
		t.Run(m.Name, func(t *testing.T) {
			t.Setenv(registrymutant.Env, m.Name) // prism-accept's proxy inherits it
			rep, code, out := accept(t, bin, "--pattern", "registry", "--registry-slot", "memstore", "--messaging-slot", "memstore",
				"--proxy", filepath.Join(bin, "prism-proxy"), "--label-filter", m.LabelFilter)
			verdict := rep.Verdict(string(m.Breaks))
			matrix = append(matrix, fmt.Sprintf("%-28s %-20s %s", m.Name, m.Breaks, verdict))
			if verdict != report.VerdictFail || code != report.ExitFailed {
				t.Errorf("registry mutant %q (%s) survived: verdict for %s = %q, exit %d; want failed, exit 1\n%s", m.Name, m.Defect, m.Breaks, verdict, code, out)
			}
		})
	}
	t.Logf("registry kill matrix:\n%s", strings.Join(matrix, "\n"))
}
