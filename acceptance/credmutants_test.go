package acceptance_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/proto/capability"
)

// credentialKills are the specs that must fail to kill each of
// mutant.CredentialMutants (found by running each).
var credentialKills = map[string]kill{
	"stale-read-when-refused": {specs: []string{
		"Auth Backend credentials refuses data calls (Unauthenticated, PermissionDenied or Unavailable, never stale data) and reports unhealthy once its backend user is revoked mid-run, and recovers when it is restored",
	}},
}

// TestCredentialMutantsAreKilled runs the auth suite with --auth (backend
// ACL users; auto picks a container, else a local redis-server) against
// each mutant of auth.backend-credentials around its base plugin, with the
// lifecycle specs and those of the capability, and requires a proven kill
// (checkKill). Without a backend that can manage users the run has no such
// specs and the test fails: TestAutoRunsContainersWhenDockerAnswers and
// redis-server on PATH are what CI provides.
func TestCredentialMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the auth suite once per mutant")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		skipUnlessRequired(t, "redis-server is not on PATH")
	}
	bin := buildCommands(t)
	var matrix []string
	for _, m := range mutant.CredentialMutants() {
		t.Run(m.Name, func(t *testing.T) {
			k, ok := credentialKills[m.Name]
			if !ok {
				t.Fatalf("mutant %q has no entry in credentialKills", m.Name)
			}
			rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant="+m.Name,
				"--plugin-arg=--base="+m.BaseOrDefault(), "--backend", m.BaseOrDefault(), "--auth",
				"--proxy", filepath.Join(bin, "prism-proxy"), "--label-filter", k.labelFilter(m.Breaks, true))
			verdict := checkKill(t, m.Name, m.Breaks, k, true, rep, code, out)
			matrix = append(matrix, fmt.Sprintf("%-26s %-26s %-9s %-7s %s", m.Name, m.Breaks, m.BaseOrDefault(), verdict, strings.Join(k.specs, " | ")))
		})
	}
	t.Logf("credential kill matrix:\n%s", strings.Join(matrix, "\n"))
	for n := range credentialKills {
		if _, err := mutant.Lookup(n); err != nil {
			t.Errorf("credentialKills: %v", err)
		}
	}
}

// TestRedisBackendCredentialsAreCertified is the control: prism-redis
// passes the same run.
func TestRedisBackendCredentialsAreCertified(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the auth suite")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		skipUnlessRequired(t, "redis-server is not on PATH")
	}
	bin := buildRedisCommands(t)
	if out, err := exec.Command("go", "build", "-o", bin+"/", "../reference/cmd/prism-proxy").CombinedOutput(); err != nil {
		t.Fatalf("build prism-proxy: %v\n%s", err, out)
	}
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-redis"), "--backend", "redis", "--auth",
		"--proxy", filepath.Join(bin, "prism-proxy"), "--label-filter", string(capability.Lifecycle)+" || "+string(capability.AuthBackendCredentials))
	if v := rep.Verdict(string(capability.AuthBackendCredentials)); v != report.Certified || code != report.ExitOK {
		t.Errorf("%s: %q, exit %d; want certified, exit 0\n%s", capability.AuthBackendCredentials, v, code, out)
	}
	for _, s := range rep.Specs {
		if s.Capability == string(capability.AuthBackendCredentials) && s.Outcome == report.Skipped {
			t.Errorf("spec %q skipped (%s): with backend users every backend-credentials spec must run", s.Name, s.Reason)
		}
	}
}
