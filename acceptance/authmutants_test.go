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
// PRISM_AUTH_MUTANT), and the capability each breaks.
var authMutants = []struct {
	defect string
	breaks capability.Name
}{
	{"alg-none", capability.AuthJWT},
	{"skip-audience", capability.AuthJWT},
	{"ignore-expiry", capability.AuthJWT},
	{"leak-token", capability.AuthNamespace},
	{"read-grants-write", capability.AuthNamespace},
}

// TestAuthMutantsAreKilled runs the auth suite against memstore behind a
// proxy with auth on, once per broken proxy, with only the specs of the
// capability the defect breaks, and requires that verdict to be "failed",
// with exit code 1.
func TestAuthMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the auth suite once per mutant")
	}
	bin := buildMutantCommands(t)
	var matrix []string
	for _, m := range authMutants {
		t.Run(m.defect, func(t *testing.T) {
			t.Setenv("PRISM_AUTH_MUTANT", m.defect) // prism-accept's proxies inherit it
			rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore",
				"--proxy", filepath.Join(bin, "prism-proxy"), "--auth", "--label-filter", string(m.breaks))
			verdict := rep.Verdict(string(m.breaks))
			matrix = append(matrix, fmt.Sprintf("%-20s %-16s %s", m.defect, m.breaks, verdict))
			if verdict != report.VerdictFail || code != report.ExitFailed {
				t.Errorf("auth mutant %q survived: verdict for %s = %q, exit %d; want failed, exit 1\n%s", m.defect, m.breaks, verdict, code, out)
			}
		})
	}
	t.Logf("auth kill matrix:\n%s", strings.Join(matrix, "\n"))
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
