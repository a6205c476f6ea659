package nats_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prism-suite/prism/acceptance"
	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
)

// TestConformance certifies the plugin binary with the suites against a
// nats-server process built from the version in go.mod, as
// task accept BACKEND=nats INSTANCE=process would. The server is a process
// of its own, not embedded in this test binary, so it runs at full speed
// under -race too (the suites bound publish stalls).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin and nats-server and runs the suites")
	}
	dir := t.TempDir()
	plugin, server := filepath.Join(dir, "prism-nats"), filepath.Join(dir, "nats-server")
	if out, err := exec.Command("go", "build", "-o", plugin, "github.com/prism-suite/prism/backends/nats/cmd/prism-nats").CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "build", "-o", server, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	cfg := acceptance.DefaultConfig()
	cfg.Plugin = plugin
	cfg.Backend = backend.NATS
	cfg.Backends.Provider = backend.Process
	cfg.Backends.NATSServerPath = server
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
