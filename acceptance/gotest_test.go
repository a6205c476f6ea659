package acceptance_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance"
)

// envRunChild makes this test binary a child that calls acceptance.Run on
// the plugin it names (the helper-process trick: Run calls RunSpecs, which
// may run once per process).
const envRunChild = "PRISM_TEST_RUN_CHILD_PLUGIN"

// TestRunChild is the child; it does nothing unless envRunChild is set.
func TestRunChild(t *testing.T) {
	plugin := os.Getenv(envRunChild)
	if plugin == "" {
		t.Skip("the child of TestRunFailsExactlyWhenPrismAcceptWould")
	}
	cfg := acceptance.DefaultConfig()
	cfg.Plugin = plugin
	cfg.ReportDir = t.TempDir()
	rep := acceptance.Run(t, cfg)
	t.Logf("child: exit code %d (%s)", rep.ExitCode, rep.ExitReason)
}

// TestRunFailsExactlyWhenPrismAcceptWould runs acceptance.Run in a child
// test process and requires it to fail t exactly when prism-accept's exit
// code for the same run is non-zero.
func TestRunFailsExactlyWhenPrismAcceptWould(t *testing.T) {
	if testing.Short() {
		t.Skip("runs acceptance.Run in a child process")
	}
	bin := buildCommands(t)
	dead := filepath.Join(t.TempDir(), "dead-plugin")
	if err := os.WriteFile(dead, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	memstore := filepath.Join(bin, "prism-memstore")
	for _, tc := range []struct {
		name   string
		plugin string
		args   []string
		fail   bool
		says   string
	}{
		{"a plugin that exits at launch", dead, nil, true, "exit 1: failed: lifecycle"},
		{"a focus that selects nothing", memstore, []string{"-ginkgo.focus=nothing is called xyzzy"}, true, "exit 64"},
		{"a certified capability", memstore, []string{"-ginkgo.label-filter=lifecycle"}, false, "exit code 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestRunChild$", "-test.v"}, tc.args...)...)
			cmd.Env = append(os.Environ(), envRunChild+"="+tc.plugin)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.fail {
				t.Errorf("acceptance.Run failed t: %v, want %v (%v)\n%s", failed, tc.fail, err, out)
			}
			if !strings.Contains(string(out), tc.says) {
				t.Errorf("child output does not say %q:\n%s", tc.says, out)
			}
		})
	}
}
