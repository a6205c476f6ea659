package acceptance_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
)

// --topology cluster is refused, as a usage error naming the flag, where
// there is no cluster to start.
func TestTopologyUsage(t *testing.T) {
	bin := buildCommands(t)
	memstore := filepath.Join(bin, "prism-memstore")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "memstore", "--topology", "cluster"}, "--topology) cluster is for --backend redis or nats"},
		{[]string{"--backend", "redis", "--topology", "cluster", "--instance", "embedded"}, "cluster needs --instance auto, container or process"},
		{[]string{"--backend", "redis", "--topology", "ring"}, `"ring" is not single or cluster`},
	} {
		args := append([]string{"--plugin", memstore, "--report-dir", t.TempDir()}, tc.args...)
		out, err := exec.Command(filepath.Join(bin, "prism-accept"), args...).CombinedOutput()
		if code := exitCode(t, err); code != report.ExitUsage || !strings.Contains(string(out), tc.want) {
			t.Errorf("prism-accept %s: exit %d, want %d saying %q\n%s", strings.Join(tc.args, " "), code, report.ExitUsage, tc.want, out)
		}
	}
}
