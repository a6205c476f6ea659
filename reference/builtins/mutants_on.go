//go:build prism_mutants

package builtins

import (
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/backends/sdk"
)

// mutants links every mutant of backends/mutant as "mutant-<name>" over
// its base driver, for the suite's own tests: a plugin block names the
// defect; nothing is read from the environment.
func mutants() []Driver {
	var out []Driver
	for _, m := range mutant.All() {
		base := m.BaseOrDefault()
		var opts []sdk.ServerOption
		if u := m.Unary(); u != nil {
			opts = append(opts, sdk.WithUnaryInterceptor(u))
		}
		if s := m.Stream(); s != nil {
			opts = append(opts, sdk.WithStreamInterceptor(s))
		}
		out = append(out, Driver{Name: "mutant-" + m.Name, New: baseDriver(base), Options: opts})
	}
	return out
}
