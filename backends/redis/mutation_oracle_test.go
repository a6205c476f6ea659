//go:build prism_mutation

package redis_test

import (
	"os"
	"testing"

	"github.com/prism-suite/prism/acceptance/mutation"
	"github.com/prism-suite/prism/harness/backend"
)

// The mutation oracle (go tool task mutation PKG=redis): the conformance suite,
// every spec prism-redis can run against an embedded backend (miniredis),
// against prism-redis built from this (mutated) source. See package
// acceptance/mutation.

func TestMain(m *testing.M) { os.Exit(mutation.Main(m)) }

func TestMutationOracle(t *testing.T) {
	mutation.Oracle(t, mutation.Target{
		Main:      "github.com/prism-suite/prism/backends/redis/cmd/prism-redis",
		Backend:   backend.Redis,
		CoverPkg:  "github.com/prism-suite/prism/backends/redis",
		Certified: []string{"lifecycle", "keyvalue.basic", "keyvalue.ttl", "keyvalue.scan", "keyvalue.batch", "pubsub.basic", "pubsub.ordered"},
	})
}
