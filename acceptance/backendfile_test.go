package acceptance_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
)

// writeBackendFile writes text as a backend.yaml and returns its path.
func writeBackendFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backend.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBackendFile runs prism-accept --backend-file: a backend it knows only
// from the file is certified (memstore ignores the backend, but the file's
// process, wait, version and config all run), and a bad file or a backend
// that never gets ready is never blamed on the plugin.
func TestBackendFile(t *testing.T) {
	bin := buildCommands(t)
	memstore := filepath.Join(bin, "prism-memstore")

	t.Run("an unknown field is a usage error naming file, line and field", func(t *testing.T) {
		t.Parallel()
		path := writeBackendFile(t, "name: x\nprocess:\n  command: [x]\n  wiat: {port: '{port}'}\nplugin: {config: {}}\n")
		out, err := exec.Command(filepath.Join(bin, "prism-accept"), "--plugin", memstore, "--backend-file", path, "--report-dir", t.TempDir()).CombinedOutput()
		if code := exitCode(t, err); code != report.ExitUsage || !strings.Contains(string(out), path+":4: process.wiat: unknown field") {
			t.Errorf("exit %d, want 64 naming %s:4 and process.wiat\n%s", code, path, out)
		}
	})
	t.Run("a backend known only by its file is started and recorded", func(t *testing.T) {
		if _, err := exec.LookPath("redis-server"); err != nil {
			t.Skip("redis-server is not on PATH")
		}
		t.Parallel()
		path := writeBackendFile(t, `name: filestore
process:
  command: [redis-server, --port, "{port}", --bind, "{host}", --dir, "{dir}", --save, ""]
  wait: {log: Ready to accept connections, port: "{port}", timeout: 30s}
  version: {exec: ["{binary}", --version], regexp: 'v=(\S+)'}
plugin:
  config: {}
  bad_configs: [{name: negative capacity, config: {max_keys: -1}, field: max_keys}]
# memstore does not use the backend: a paused or stopped one cannot stall it.
faults: {outage: false, pause: false}
`)
		rep, code, out := accept(t, bin, "--plugin", memstore, "--backend-file", path, "--instance", "process", "--label-filter", "lifecycle")
		b := rep.Backend
		if code != report.ExitOK || b.Kind != "filestore" || b.Provider != "process" || b.File != path || !strings.HasPrefix(b.ServerVersion, "7.") {
			t.Errorf("exit %d, backend %+v; want 0, filestore via process from %s with the version its command read\n%s", code, b, path, out)
		}
	})
	t.Run("a wait that never succeeds is a harness error, not a plugin failure", func(t *testing.T) {
		t.Parallel()
		path := writeBackendFile(t, `name: neverready
process:
  command: [sh, -c, "echo starting on {port}; exec sleep 30"]
  wait: {log: ready, timeout: 1s}
plugin: {config: {}}
`)
		rep, code, out := accept(t, bin, "--plugin", memstore, "--backend-file", path, "--instance", "process", "--label-filter", "lifecycle")
		for _, want := range []string{"backend file " + path, "provider process", `waited 1s for log line "ready"`, "starting on"} {
			if !strings.Contains(out, want) {
				t.Errorf("output does not say %q", want)
			}
		}
		if code != report.ExitError || rep.Verdict("lifecycle") != report.VerdictError || rep.Backend.File != path {
			t.Errorf("exit %d, lifecycle %q, backend file %q; want 2, error, %s\n%s", code, rep.Verdict("lifecycle"), rep.Backend.File, path, out)
		}
	})
	t.Run("--backend and --backend-file must agree", func(t *testing.T) {
		t.Parallel()
		path := writeBackendFile(t, "name: other\nexternal: {address_env: X}\nplugin: {config: {}}\n")
		out, err := exec.Command(filepath.Join(bin, "prism-accept"), "--plugin", memstore, "--backend", "redis", "--backend-file", path, "--report-dir", t.TempDir()).CombinedOutput()
		if code := exitCode(t, err); code != report.ExitUsage {
			t.Errorf("exit %d, want 64\n%s", code, out)
		}
	})
}
