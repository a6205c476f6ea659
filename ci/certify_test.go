// Package ci holds no Go code: this test checks ci/certify.sh, the script
// `task certify` (and so `task test` and CI) runs, with a stand-in task binary
// whose runs end as the test says, and a stand-in prism-report.
package ci_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeTask stands in for `task [-x] accept ARGS`: it prints three lines naming its
// arguments (with pauses, so runs overlap), then exits with the code the
// environment gives for those arguments (FAKE_<n>=code, n being the run's
// position in certify.sh's list), or is killed before it writes its code.
const fakeTask = `#!/usr/bin/env bash
passthrough=0
[ "$1" = -x ] && { passthrough=1; shift; }
shift # "accept"
args="$*"
for i in 1 2 3; do echo "line $i of [$args]"; sleep 0.05; done
echo "$args" >>"$FAKE_DIR/ran"
code=0
while IFS='|' read -r k v; do [ "$args" = "$k" ] && code=$v; done <"$FAKE_DIR/codes"
[ "$code" = killed ] && kill -9 $$
if [ "$code" = noreport ]; then code=2; else
	dir="out/accept/$(echo "$args" | md5sum | cut -c1-8)"
	mkdir -p "$dir" && echo '{}' >"$dir/report.json"
fi
# Like task: a failed command makes it exit 201 unless -x passes its code through.
[ "$code" != 0 ] && [ "$passthrough" = 0 ] && exit 201
exit "$code"
`

const fakeReport = `#!/usr/bin/env bash
n=0
for a; do case "$a" in *report.json) n=$((n + 1)) ;; esac; done
echo "matrix of $n reports"
exit "${FAKE_REPORT_CODE:-0}"
`

// certify runs a copy of ci/certify.sh with the stand-ins; codes maps a run's
// task arguments (as the script passes them, after word splitting) to its exit
// code or "killed".
func certify(t *testing.T, jobs string, codes map[string]string, reportCode string, runs ...string) (string, int) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"ci", "bin", "fake"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("certify.sh")
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, text string) {
		if err := os.WriteFile(filepath.Join(root, path), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("ci/certify.sh", string(script))
	write("fake/task", fakeTask)
	write("bin/prism-report", fakeReport)
	var lines []string
	for k, v := range codes {
		lines = append(lines, k+"|"+v)
	}
	write("fake/codes", strings.Join(lines, "\n")+"\n")
	// A report of an earlier run, older than this one: never merged.
	if err := os.MkdirAll(filepath.Join(root, "out/accept/earlier"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("out/accept/earlier/report.json", "{}")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(root, "out/accept/earlier/report.json"), old, old); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "ci/certify.sh")}, runs...)...)
	cmd.Env = append(os.Environ(), "TASK_EXE="+filepath.Join(root, "fake/task"), "FAKE_DIR="+filepath.Join(root, "fake"),
		"CERTIFY_JOBS="+jobs, "FAKE_REPORT_CODE="+reportCode)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	ran, _ := os.ReadFile(filepath.Join(root, "fake/ran"))
	t.Logf("ran:\n%s", ran)
	return string(out), code
}

// Runs of task certify as the stand-in task sees them: each in one
// process (PROCS=1), since certify runs three at a time.
const (
	nats     = "PROCS=1 BACKEND=nats VIA=both"
	registry = "PROCS=1 PATTERN=registry SLOTS=memstore+memstore redis+nats"
	memstore = "PROCS=1 BACKEND=memstore VIA=both"
	pgAuth   = "PROCS=1 BACKEND=postgres SUITE=auth"
	admin    = "PROCS=1 BACKEND=memstore SUITE=admin"
)

func TestCertifyExitsWithTheWorstCode(t *testing.T) {
	for _, tc := range []struct {
		name       string
		codes      map[string]string
		reportCode string
		want       int
	}{
		{"every run certified", nil, "0", 0},
		{"one run failed", map[string]string{nats: "1"}, "0", 1},
		{"a failure outranks a harness error and a selection error", map[string]string{memstore: "2", registry: "64", pgAuth: "1"}, "0", 1},
		{"a harness error outranks a selection error", map[string]string{memstore: "64", nats: "2"}, "0", 2},
		{"a selection error alone", map[string]string{registry: "64"}, "0", 64},
		{"a run killed before it ended is a harness error", map[string]string{nats: "killed"}, "0", 2},
		{"the merged matrix's failure counts", nil, "1", 1},
		{"the last run's failure counts", map[string]string{admin: "1"}, "0", 1},
		{"a run that wrote no report counts by its code", map[string]string{nats: "noreport"}, "0", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, code := certify(t, "3", tc.codes, tc.reportCode)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\n%s", code, tc.want, out)
			}
			if !strings.Contains(out, fmt.Sprintf("ci/certify.sh: exit %d (the worst of 16 runs and the merge)", tc.want)) {
				t.Fatalf("no final line:\n%s", out)
			}
			// The merge gets the report of every run that wrote one, and no older report.
			want := 16
			for _, c := range tc.codes {
				if c == "noreport" || c == "killed" {
					want--
				}
			}
			if m := fmt.Sprintf("matrix of %d reports", want); !strings.Contains(out, m) {
				t.Errorf("want %q:\n%s", m, out)
			}
		})
	}
}

func TestCertifyRunsEveryRunAndPrintsEachLogWhole(t *testing.T) {
	out, code := certify(t, "3", map[string]string{memstore: "1"}, "0")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	// Every run of the list ran, each printed its three lines together,
	// under the line with its exit code.
	started := regexp.MustCompile(`(?m)^==> \[\d+s\] started: task accept (.*)$`).FindAllStringSubmatch(out, -1)
	if len(started) != 16 {
		t.Fatalf("%d runs started, want 16:\n%s", len(started), out)
	}
	for _, s := range started {
		args := s[1]
		seen := regexp.QuoteMeta(strings.ReplaceAll(args, `"`, "")) // as the run sees them, after word splitting
		want := regexp.QuoteMeta("task accept "+args+": exit ") + `\d+ after \d+s\n` +
			`    line 1 of \[` + seen + `\]\n    line 2 of \[` + seen + `\]\n    line 3 of \[` + seen + `\]\n`
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the log of %q is not printed whole under its exit line:\n%s", args, out)
		}
	}
	if !strings.Contains(out, "==> task accept "+memstore+" exited 1") {
		t.Errorf("the failed run is not named at the end:\n%s", out)
	}
}

func TestCertifyRefusesABadJobCount(t *testing.T) {
	for _, jobs := range []string{"0", "x", "-1"} {
		if out, code := certify(t, jobs, nil, "0"); code != 64 || !strings.Contains(out, "CERTIFY_JOBS") {
			t.Errorf("CERTIFY_JOBS=%s: exit %d, want 64 naming CERTIFY_JOBS:\n%s", jobs, code, out)
		}
	}
}

func TestCertifyRunsTheRunsItIsGiven(t *testing.T) {
	out, code := certify(t, "3", map[string]string{"BACKEND=redis INSTANCE=embedded VIA=direct": "1"}, "0",
		"BACKEND=memstore INSTANCE=embedded VIA=direct", "BACKEND=redis INSTANCE=embedded VIA=direct")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	if n := strings.Count(out, "started: task accept"); n != 2 || !strings.Contains(out, "matrix of 2 reports") {
		t.Fatalf("%d runs started, want the 2 given, merged:\n%s", n, out)
	}
}

func TestCertifyWithNoReportIsAHarnessError(t *testing.T) {
	out, code := certify(t, "1", map[string]string{"BACKEND=memstore VIA=direct": "noreport"}, "0", "BACKEND=memstore VIA=direct")
	if code != 2 || !strings.Contains(out, "no run wrote a report") {
		t.Fatalf("exit %d, want 2 saying no run wrote a report:\n%s", code, out)
	}
}
