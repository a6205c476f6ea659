package acceptance_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

// authMutants are the deliberately broken proxies of reference/internal/
// authmutant (test only: a prism-proxy built with -tags prism_mutants reads
// PRISM_AUTH_MUTANT), the capability each breaks, and the specs that must
// fail to kill it (found by running each; a defect may fail more).
var authMutants = []struct {
	defect string
	breaks capability.Name
	kill   kill
}{
	{"alg-none", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: alg none",
		"Auth Tokens are rejected with Unauthenticated and the generic message: alg None",
		"Auth Tokens are rejected with Unauthenticated and the generic message: alg NONE",
		"Auth Tokens are rejected with Unauthenticated and the generic message: alg nOnE with a signature"}}},
	{"skip-audience", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: a wrong aud",
		"Auth Tokens are rejected with Unauthenticated and the generic message: an aud array without ours",
		"Auth Tokens are rejected with Unauthenticated and the generic message: no aud"}}},
	{"ignore-expiry", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: expired beyond the clock skew"}}},
	{"leak-token", capability.AuthNamespace, kill{specs: []string{
		"Auth Namespaces never forwards the token to the plugin"}}},
	{"read-grants-write", capability.AuthNamespace, kill{specs: []string{
		"Auth Namespaces lets a read-only grant read but not write (PermissionDenied)"}}},
}

// TestAuthMutantsAreKilled runs the auth suite against memstore behind a
// proxy with auth on, once per broken proxy, with the lifecycle specs and
// those of the capability the defect breaks, and requires a proven kill
// (checkKill): exit code 1 with that capability failed, lifecycle
// certified, one of its specs passed and the specs of authMutants failed.
func TestAuthMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the auth suite once per mutant")
	}
	bin := buildMutantCommands(t)
	var matrix killMatrix
	t.Cleanup(func() { t.Logf("auth kill matrix:\n%s", &matrix) })
	for _, m := range authMutants {
		t.Run(m.defect, func(t *testing.T) {
			t.Parallel()
			// prism-accept's proxies inherit the variable
			rep, code, out := acceptEnv(t, bin, []string{authMutantEnv + "=" + m.defect}, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore",
				"--proxy", filepath.Join(bin, "prism-proxy"), "--auth", "--label-filter", m.kill.labelFilter(m.breaks, true))
			verdict := checkKill(t, m.defect, m.breaks, m.kill, true, rep, code, out)
			matrix.add(fmt.Sprintf("%-20s %-16s %-7s %s", m.defect, m.breaks, verdict, strings.Join(m.kill.specs, " | ")))
		})
	}
}

// TestAuthIsCertifiedForTheProxy is the control: the unbroken proxy passes
// the same run.
func TestAuthIsCertifiedForTheProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the auth suite")
	}
	bin := buildCommands(t)
	if out, err := exec.Command("go", "build", "-o", bin+"/", "../reference/cmd/prism-proxy").CombinedOutput(); err != nil {
		t.Fatalf("build prism-proxy: %v\n%s", err, out)
	}
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore",
		"--proxy", filepath.Join(bin, "prism-proxy"), "--auth", "--label-filter", "auth")
	for _, c := range capability.ProxyCapabilities {
		if v := rep.Verdict(string(c)); v != report.Certified {
			t.Errorf("%s: %q, want certified\n%s", c, v, out)
		}
	}
	if code != report.ExitOK {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
}
