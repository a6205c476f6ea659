// Package example_test certifies the memstore plugin the way an author
// outside this repository would certify theirs: with the public API of
// package acceptance and a plugin binary built by the test.
package example_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prism-suite/prism/acceptance"
	"github.com/prism-suite/prism/acceptance/report"
)

func TestCertifyMemstore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and certifies a plugin")
	}
	// An author would point at their own binary; here we build memstore.
	plugin := filepath.Join(t.TempDir(), "prism-memstore")
	if out, err := exec.Command("go", "build", "-o", plugin, "github.com/prism-suite/prism/backends/memstore/cmd/prism-memstore").CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}

	cfg := acceptance.DefaultConfig()
	cfg.Plugin = plugin
	cfg.Backend = "memstore"
	cfg.ReportDir = t.TempDir()
	rep := acceptance.Run(t, cfg)

	if got := rep.Verdict("keyvalue.scan"); got != report.Certified {
		t.Errorf("keyvalue.scan: %q, want certified", got)
	}
}
