package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
)

// shard writes a report.json with exit code code in dir/name.
func shard(t *testing.T, dir, name string, code int) string {
	t.Helper()
	r := report.Report{Schema: report.SchemaVersion, SuiteVersion: "test", ExitCode: code}
	r.Backend.Kind = "redis"
	r.Plugin.Name = name
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name, "report.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExpectShards(t *testing.T) {
	dir := t.TempDir()
	ok1, ok2 := shard(t, dir, "a", 0), shard(t, dir, "b", 0)
	failed := shard(t, dir, "c", report.ExitFailed)
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		name string
		args []string
		want int
		says string
	}{
		{"all shards passed", []string{"--expect", "2", ok1, ok2}, report.ExitOK, ""},
		{"a shard never uploaded its report", []string{"--expect", "3", ok1, ok2}, report.ExitError, "2 of 3 expected reports"},
		{"a named report is missing", []string{"--expect", "2", ok1, filepath.Join(dir, "gone", "report.json")}, report.ExitError, "missing shard"},
		{"a failure outranks a missing shard", []string{"--expect", "3", ok1, failed}, report.ExitFailed, "2 of 3"},
		{"no report at all", []string{"--expect", "1"}, report.ExitError, "0 of 1"},
		{"without --expect a missing report fails as before", []string{ok1, filepath.Join(dir, "gone.json")}, report.ExitFailed, "read report"},
		{"--exit alone takes the worst code", []string{"--exit", ok1, failed}, report.ExitFailed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := run(append([]string{"-o", out}, tc.args...), &stdout, &stderr)
			if got != tc.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.says) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.says)
			}
		})
	}
}
