//go:build prism_mutation

package sdk_test

import (
	"os"
	"testing"

	"github.com/prism-suite/prism/acceptance/mutation"
	"github.com/prism-suite/prism/harness/backend"
)

// The mutation oracle of the SDK (go tool task mutation PKG=sdk): the
// conformance suite, every spec memstore can run, against prism-memstore
// built from this (mutated) SDK. See package acceptance/mutation.

func TestMain(m *testing.M) { os.Exit(mutation.Main(m)) }

func TestMutationOracle(t *testing.T) {
	mutation.Oracle(t, mutation.Target{
		Main:     "github.com/prism-suite/prism/backends/memstore/cmd/prism-memstore",
		Backend:  backend.Memstore,
		CoverPkg: "github.com/prism-suite/prism/backends/sdk",
		Certified: []string{"lifecycle", "keyvalue.basic", "keyvalue.ttl", "keyvalue.scan", "keyvalue.batch",
			"pubsub.basic", "pubsub.ordered", "pubsub.queue"},
	})
}
