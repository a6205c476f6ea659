package proto_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the Go code and the protocol
// reference (PROTOCOL-REFERENCE.md, protoc-gen-doc) from the .proto files with
// buf (as `go tool`) into a temp dir and fails when the committed files
// differ: run `go tool task proto` and commit the result.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds buf")
	}
	out := t.TempDir()
	cmd := exec.Command("go", "tool", "buf", "generate", "-o", out)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	gen := filepath.Join(out, "proto")
	n := 0
	err := filepath.WalkDir(gen, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(gen, path)
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(rel)
		if err != nil {
			t.Errorf("%s is generated but not committed; run `go tool task proto`", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale; run `go tool task proto` and commit", rel)
		}
		if strings.HasSuffix(rel, ".pb.go") {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	committed := 0
	_ = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".pb.go") {
			committed++
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(gen, "PROTOCOL-REFERENCE.md")); err != nil {
		t.Errorf("buf generate wrote no PROTOCOL-REFERENCE.md (buf.gen.yaml's protoc-gen-doc plugin): %v", err)
	}
	if n == 0 || committed != n {
		t.Errorf("generated %d files, %d .pb.go files committed; stale or orphaned generated code", n, committed)
	}
}
