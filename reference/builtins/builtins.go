// Package builtins is the list of Go drivers the shipped prism-proxy links
// as builtins (a plugin block's "builtin: <name>"): memstore, redis and
// nats, each a fresh driver per start. A prism_mutants build (tests only)
// adds the suite's mutants as "mutant-<name>"; the default build has none.
package builtins

import (
	"slices"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/reference/proxy"
)

// Driver is one linked driver.
type Driver struct {
	// Name is what a plugin block's builtin field says.
	Name string
	// New returns a fresh driver.
	New func() sdk.Driver
	// Options are the driver's server options (a mutant's interceptors).
	Options []sdk.ServerOption
}

// All returns the linked drivers, sorted by name.
func All() []Driver {
	all := []Driver{
		{Name: "memstore", New: baseDriver("memstore")},
		{Name: "nats", New: baseDriver("nats")},
		{Name: "redis", New: baseDriver("redis")},
	}
	all = append(all, mutants()...)
	slices.SortFunc(all, func(a, b Driver) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return all
}

// Names returns the names of the linked drivers, sorted.
func Names() []string {
	var out []string
	for _, d := range All() {
		out = append(out, d.Name)
	}
	return out
}

// Options returns a [proxy.WithBuiltin] option per linked driver.
func Options() []proxy.Option {
	var out []proxy.Option
	for _, d := range All() {
		out = append(out, proxy.WithBuiltin(d.Name, d.New, d.Options...))
	}
	return out
}

// baseDriver returns the constructor of the reference driver name.
func baseDriver(name string) func() sdk.Driver {
	switch name {
	case "nats":
		return func() sdk.Driver { return nats.New() }
	case "redis":
		return func() sdk.Driver { return redis.New() }
	default:
		return func() sdk.Driver { return memstore.New() }
	}
}
