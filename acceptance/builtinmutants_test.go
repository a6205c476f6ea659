package acceptance_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance"
	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/backends/mutant"
)

// builtinMutants are the mutants a --via builtin run must catch in a
// prism-proxy built with -tags prism_mutants, which links each mutant of
// backends/mutant as the builtin "mutant-<name>" (a plugin block names
// it; nothing is read from the environment, and the shipped build has
// none): one KeyValue and one PubSub defect, through the proxy's
// in-process channel.
var builtinMutants = []string{"lost-delete", "lose-metadata"}

// TestBuiltinMutantsAreKilled runs prism-accept --via builtin against a
// mutant linked into the proxy: the specs of mutantKills fail through the
// proxy, and the run fails.
func TestBuiltinMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suites once per mutant")
	}
	bin := buildMutantCommands(t)
	for _, name := range builtinMutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, err := mutant.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			k := mutantKills[name]
			// Through the proxy, a spec's name carries the via-proxy container's.
			var specs []string
			for _, s := range k.specs {
				specs = append(specs, acceptance.ViaProxyText+" "+s)
			}
			k.specs = specs
			args := []string{"--via", "builtin", "--backend", m.BaseOrDefault(), "--builtin", "mutant-" + name,
				"--proxy", filepath.Join(bin, "prism-proxy"), "--instance", "embedded", "--label-filter", k.labelFilter(m.Breaks, true)}
			if m.Breaks.Family() == "pubsub" {
				args = append(args, "--timeout-eventually", "5s")
			}
			rep, code, out := accept(t, bin, args...)
			checkKill(t, name, m.Breaks, k, true, rep, code, out)
			if rep.Via != "builtin" || rep.Plugin.Mode != report.ModeBuiltin || rep.Plugin.Builtin != "mutant-"+name {
				t.Errorf("report: via %q, plugin mode %q, builtin %q; want builtin, builtin, mutant-%s", rep.Via, rep.Plugin.Mode, rep.Plugin.Builtin, name)
			}
		})
	}
}

// TestViaBuiltinUsage: prism-accept --via builtin refuses, with exit 64
// and a message naming the problem, a --plugin (the driver is linked into
// the proxy), a backend that is not a linked driver, and a mutant builtin
// with the shipped prism-proxy, which links memstore, nats and redis only.
func TestViaBuiltinUsage(t *testing.T) {
	bin := buildCommands(t)
	proxyBin := filepath.Join(bin, "prism-proxy")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"plugin given", []string{"--plugin", filepath.Join(bin, "prism-memstore")}, "--plugin is not used with --via builtin"},
		{"backend not linked", []string{"--backend", "postgres"}, `"postgres" is not a driver linked into ` + proxyBin + "; known: memstore, nats, redis"},
		{"mutant in the shipped proxy", []string{"--builtin", "mutant-lost-delete"}, `"mutant-lost-delete" is not a driver linked into ` + proxyBin + "; known: memstore, nats, redis"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--via", "builtin", "--proxy", proxyBin, "--report-dir", t.TempDir()}, c.args...)
			out, err := exec.Command(filepath.Join(bin, "prism-accept"), args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != report.ExitUsage {
				t.Fatalf("prism-accept %s: %v, want exit %d\n%s", strings.Join(args, " "), err, report.ExitUsage, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("got %q, want it to contain %q", out, c.want)
			}
		})
	}
}
