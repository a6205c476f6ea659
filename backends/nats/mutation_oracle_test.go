//go:build prism_mutation

package nats_test

import (
	"os"
	"testing"

	"github.com/prism-suite/prism/acceptance/mutation"
	"github.com/prism-suite/prism/harness/backend"
)

// The mutation oracle (go tool task mutation PKG=nats): the conformance suite,
// every spec prism-nats can run against an embedded backend (nats-server in-process with JetStream),
// against prism-nats built from this (mutated) source. See package
// acceptance/mutation.

func TestMain(m *testing.M) { os.Exit(mutation.Main(m)) }

func TestMutationOracle(t *testing.T) {
	mutation.Oracle(t, mutation.Target{
		Main:      "github.com/prism-suite/prism/backends/nats/cmd/prism-nats",
		Backend:   backend.NATS,
		CoverPkg:  "github.com/prism-suite/prism/backends/nats",
		Certified: []string{"lifecycle", "pubsub.basic", "pubsub.ordered", "pubsub.queue", "pubsub.durable"},
	})
}
