// Package pythonmemstore_test checks the Python plugin's committed generated
// code. The plugin itself is Python (plugin.py); `task certify` certifies it.
package pythonmemstore_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates gen/ with gen.sh (Debian's protoc
// and grpc_python_plugin) into a temp dir and fails when the committed code
// differs or a file is missing or left over: run `go tool task proto` and
// commit. The code is committed so that running the plugin needs only
// python3-grpcio and python3-protobuf, not the compilers.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install protobuf-compiler protobuf-compiler-grpc grpc-proto; .ci/run does)", tool)
		}
	}
	if _, err := os.Stat("/usr/share/grpc-proto/grpc/health/v1/health.proto"); err != nil {
		t.Skip("health.proto is not installed (apt-get install grpc-proto; .ci/run does)")
	}
	out := t.TempDir()
	if b, err := exec.Command("sh", "gen.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	}
	compareTrees(t, out, "gen") // the Python scaffold embeds this one (kit.go)
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(want, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, path)
		seen[rel] = true
		w, _ := os.ReadFile(path)
		g, err := os.ReadFile(filepath.Join(got, rel))
		switch {
		case err != nil:
			t.Errorf("%s/%s is generated but not committed; run `go tool task proto`", got, rel)
		case !bytes.Equal(g, w):
			t.Errorf("%s/%s is stale; run `go tool task proto` and commit", got, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(got, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".py" {
			return nil
		}
		if rel, _ := filepath.Rel(got, path); !seen[rel] {
			t.Errorf("%s is not generated any more; remove it (run `go tool task proto`)", path)
		}
		return nil
	})
}
