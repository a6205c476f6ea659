package main

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestMatrixWorkflowExpectsEveryShard checks that the example matrix
// workflow's merge step expects exactly as many reports as the matrix has
// jobs, so a shard that never uploads fails the gate.
func TestMatrixWorkflowExpectsEveryShard(t *testing.T) {
	b, err := os.ReadFile("../../../ci/examples/github-actions-matrix.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Needs    any `yaml:"needs"`
			Strategy struct {
				Matrix map[string][]any `yaml:"matrix"`
			} `yaml:"strategy"`
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	jobs := 1
	for _, values := range wf.Jobs["certify"].Strategy.Matrix {
		jobs *= len(values)
	}
	if jobs < 2 {
		t.Fatalf("certify has %d matrix jobs, want a matrix", jobs)
	}
	expect := regexp.MustCompile(`prism-report .*--expect (\d+)`)
	found := false
	for _, s := range wf.Jobs["merge"].Steps {
		if m := expect.FindStringSubmatch(s.Run); m != nil {
			found = true
			if n, _ := strconv.Atoi(m[1]); n != jobs {
				t.Errorf("merge expects %d reports, the matrix has %d jobs", n, jobs)
			}
		}
	}
	if !found {
		t.Error("the merge job runs no prism-report --expect N")
	}
}
