package nats_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prism-suite/prism/acceptance"
	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
)

// TestConformance certifies the plugin binary with the suites against an
// embedded nats-server, as prism-accept --backend nats --instance embedded
// would.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin and runs the suites")
	}
	if raceEnabled {
		t.Skip("the suites bound publish stalls and plugin memory, and the embedded nats-server runs in this " +
			"test binary: under the race detector it runs several times slower; run without -race, or prism-accept")
	}
	plugin := filepath.Join(t.TempDir(), "prism-nats")
	if out, err := exec.Command("go", "build", "-o", plugin, "github.com/prism-suite/prism/backends/nats/cmd/prism-nats").CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	cfg := acceptance.DefaultConfig()
	cfg.Plugin = plugin
	cfg.Backend = backend.NATS
	cfg.Backends.Provider = backend.Embedded
	cfg.ReportDir = t.TempDir()
	rep := acceptance.Run(t, cfg)
	for _, c := range []string{"lifecycle", "pubsub.basic", "pubsub.ordered", "pubsub.queue", "pubsub.durable"} {
		if got := rep.Verdict(c); got != report.Certified {
			t.Errorf("%s: %q, want certified", c, got)
		}
	}
	for _, c := range []string{"keyvalue.basic", "keyvalue.ttl"} {
		if got := rep.Verdict(c); got != report.NotDeclared {
			t.Errorf("%s: %q, want not declared", c, got)
		}
	}
}
