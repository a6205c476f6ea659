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
		"Auth Tokens are rejected with Unauthenticated and the generic message: no aud",
		nearMiss + "an empty aud string, beside ours",
		nearMiss + "an empty aud array, beside an array of ours"}}},
	{"ignore-expiry", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: expired beyond the clock skew",
		nearMiss + "exp passed by exactly the clock skew, beside exp passed by the clock skew less a margin",
		"Auth Time moving on refuses a token on the next unary call once it expires, though it was accepted (and could be cached) before"}}},
	{"leak-token", capability.AuthNamespace, kill{specs: []string{
		"Auth Namespaces never forwards the token to the plugin"}}},
	{"read-grants-write", capability.AuthNamespace, kill{specs: []string{
		"Auth Namespaces lets a read-only grant read but not write (PermissionDenied)"}}},
	{"aud-substring", capability.AuthJWT, kill{specs: []string{
		nearMiss + `an aud with ours as its prefix (ours + "-2"), beside ours`,
		nearMiss + `an aud with ours as its suffix ("x" + ours), beside ours`,
		nearMiss + "an aud string listing ours among others, space-separated, beside an array of the same",
		nearMiss + "an aud array whose values contain ours but none is ours, beside one that holds ours"}}},
	{"iss-prefix", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: an iss with a trailing slash",
		nearMiss + "an iss with a path after ours, beside ours",
		nearMiss + "an iss with ours in upper case (HTTP://...), beside ours"}}},
	{"skew-twice", capability.AuthJWT, kill{specs: []string{
		nearMiss + "exp passed by exactly the clock skew, beside exp passed by the clock skew less a margin",
		nearMiss + "nbf ahead by the clock skew and a margin, beside nbf ahead by exactly the clock skew",
		nearMiss + "iat ahead by the clock skew and a margin, beside iat ahead by exactly the clock skew"}}},
	{"ignore-nbf", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: nbf beyond the clock skew",
		nearMiss + "nbf ahead by the clock skew and a margin, beside nbf ahead by exactly the clock skew"}}},
	{"cache-past-expiry", capability.AuthJWT, kill{specs: []string{
		"Auth Time moving on refuses a token on the next unary call once it expires, though it was accepted (and could be cached) before"}}},
	{"stream-outlives-token", capability.AuthJWT, kill{specs: []string{
		"Auth Time moving on ends an open subscription with Unauthenticated when its token expires"}}},
	{"namespace-prefix", capability.AuthNamespace, kill{specs: []string{
		nearMiss + "a grant on a prefix of the namespace (its name less the last character), beside a grant on it",
		nearMiss + `a grant on a word-prefix of the namespace ("team" for "team-a"), beside a grant on it`}}},
	{"scope-unanchored", capability.AuthNamespace, kill{specs: []string{
		nearMiss + "a scope whose access contains read (prism:<ns>:readwrite), beside prism:<ns>:read",
		nearMiss + "a scope with the read grant and a suffix (prism:<ns>:read:all), beside prism:<ns>:read",
		nearMiss + "a scope with a prefix before the read grant (xprism:<ns>:read), beside prism:<ns>:read"}}},
	{"kid-any-key", capability.AuthJWT, kill{specs: []string{
		"Auth Tokens are rejected with Unauthenticated and the generic message: an unknown kid",
		nearMiss + "a kid with one character more than the issuer's, beside the issuer's",
		nearMiss + "a kid that is a prefix of the issuer's, beside the issuer's"}}},
	{"lenient-claims", capability.AuthJWT, kill{specs: []string{
		nearMiss + "an empty sub, beside a one-character sub",
		nearMiss + "no sub, beside a one-character sub",
		nearMiss + "exp as a string of digits, beside the same exp as a number",
		nearMiss + "nbf as a string of digits, beside the same nbf as a number",
		nearMiss + "exp - iat of max_token_lifetime and a second, beside exactly max_token_lifetime",
		nearMiss + "exp beyond now + max_token_lifetime + clock_skew by a margin (no iat), beside exactly at it"}}},
}

// nearMiss is the start of the names of the near-miss specs.
const nearMiss = "Auth Near misses a token that almost passes is refused, beside its twin that just passes: "

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
	for _, c := range capability.ProxyAuthCapabilities {
		if v := rep.Verdict(string(c)); v != report.Certified {
			t.Errorf("%s: %q, want certified\n%s", c, v, out)
		}
	}
	if code != report.ExitOK {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
}
