//go:build prism_mutation

package memstore_test

import (
	"os"
	"testing"

	"github.com/prism-suite/prism/acceptance/mutation"
	"github.com/prism-suite/prism/harness/backend"
)

// The mutation oracle (go tool task mutation PKG=memstore): the conformance
// suite, every spec memstore can run, against prism-memstore built from this
// (mutated) source. See package acceptance/mutation.

func TestMain(m *testing.M) { os.Exit(mutation.Main(m)) }

func TestMutationOracle(t *testing.T) {
	mutation.Oracle(t, mutation.Target{
		Main:     "github.com/prism-suite/prism/backends/memstore/cmd/prism-memstore",
		Backend:  backend.Memstore,
		CoverPkg: "github.com/prism-suite/prism/backends/memstore",
		Certified: []string{"lifecycle", "keyvalue.basic", "keyvalue.ttl", "keyvalue.scan", "keyvalue.batch",
			"pubsub.basic", "pubsub.ordered", "pubsub.queue"},
	})
}
