package acceptance_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

// procsJudged reads the judge.json each process of a --procs run left in
// reportDir/procs/<n>: the specs it ran (not disabled), by location and name.
func procsJudged(t *testing.T, reportDir string, n int) []map[string]report.Outcome {
	t.Helper()
	var out []map[string]report.Outcome
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(reportDir, "procs", strconv.Itoa(i), "judge.json"))
		if err != nil {
			t.Fatalf("process %d of %d: %v", i, n, err)
		}
		var run report.Run
		if err := json.Unmarshal(b, &run); err != nil {
			t.Fatal(err)
		}
		ran := map[string]report.Outcome{}
		for _, s := range run.Specs {
			if s.Outcome != report.Disabled {
				ran[s.Location+" "+s.Via+" "+s.Name] = s.Outcome
			}
		}
		out = append(out, ran)
	}
	return out
}

// TestProcsRunEachSpecOnce: with --procs 3 every selected spec runs in
// exactly one of three processes, each ran some, and the merged report
// judges them as one run would (memstore certified on the capabilities
// selected, exit 0). Three capabilities' specs keep it short.
func TestProcsRunEachSpecOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept")
	}
	t.Parallel()
	bin := buildCommands(t)
	selected := []string{"keyvalue.ttl", "keyvalue.scan", "pubsub.queue"}
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore", "--procs", "3",
		"--label-filter", strings.Join(selected, " || "))
	dir := filepath.Dir(reportPath(t, out))
	if code != report.ExitOK || rep.ExitCode != report.ExitOK || rep.Procs != 3 {
		t.Fatalf("exit %d (report %d, procs %d), want 0 with 3 processes\n%s", code, rep.ExitCode, rep.Procs, out)
	}
	ran := procsJudged(t, dir, 3)
	seen := map[string]int{}
	for i, r := range ran {
		if len(r) == 0 {
			t.Errorf("process %d ran no spec", i+1)
		}
		for k := range r {
			seen[k]++
		}
	}
	reported := 0
	for _, s := range rep.Specs {
		k := s.Location + " " + s.Via + " " + s.Name
		if s.Outcome == report.Disabled {
			if seen[k] != 0 {
				t.Errorf("spec %q: disabled in the report, run by %d processes", s.Name, seen[k])
			}
			continue
		}
		reported++
		if seen[k] != 1 {
			t.Errorf("spec %q: outcome %q, run by %d processes; want run by exactly one", s.Name, s.Outcome, seen[k])
		}
		if !strings.Contains(s.Reproduce, "--report-dir="+filepath.Join(dir, "reproduce")) || strings.Contains(s.Reproduce, "--shard") {
			t.Errorf("spec %q: reproduce %q must name the run's report folder and no shard", s.Name, s.Reproduce)
		}
	}
	if len(seen) != reported || reported < 20 {
		t.Errorf("the processes ran %d specs, the report has %d not disabled; want the same, and at least 20", len(seen), reported)
	}
	for _, name := range selected {
		if v := rep.Verdict(name); v != report.Certified {
			t.Errorf("%s: verdict %q, want %q", name, v, report.Certified)
		}
	}
}

// TestProcsNeverGreenByMistake: a --procs run fails or errors exactly where
// one process would: a plugin that cannot start, a mutant, and a process
// that dies without its reports (a harness error, never a pass).
func TestProcsNeverGreenByMistake(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept")
	}
	t.Parallel()
	bin := buildCommands(t)

	t.Run("a plugin that exits at launch fails lifecycle", func(t *testing.T) {
		t.Parallel()
		dead := filepath.Join(t.TempDir(), "dead-plugin")
		if err := os.WriteFile(dead, []byte("#!/bin/sh\necho 'cannot open /etc/my-plugin.conf' >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		rep, code, out := accept(t, bin, "--plugin", dead, "--backend", "memstore", "--procs", "2")
		if code != report.ExitFailed || rep.Verdict(string(capability.Lifecycle)) != report.VerdictFail {
			t.Errorf("exit %d, lifecycle %q; want 1, failed\n%s", code, rep.Verdict(string(capability.Lifecycle)), out)
		}
		if c := rep.Capability(string(capability.Lifecycle)); c == nil || !strings.Contains(c.Reason, "cannot open /etc/my-plugin.conf") {
			t.Errorf("lifecycle reason lacks the plugin's stderr: %+v", c)
		}
	})

	t.Run("a mutant is killed", func(t *testing.T) {
		t.Parallel()
		k := kill{specs: []string{"KeyValue basic deletes a key and reports that it existed"}}
		rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant=lost-delete",
			"--plugin-arg=--base=memstore", "--backend", "memstore", "--label-filter", k.labelFilter(capability.KeyValueBasic, true), "--procs", "2")
		if rep.Procs != 2 {
			t.Errorf("report: procs %d, want 2", rep.Procs)
		}
		checkKill(t, "lost-delete", capability.KeyValueBasic, k, true, rep, code, out)
	})

	t.Run("a process killed mid-run is a harness error", func(t *testing.T) {
		t.Parallel()
		run := startAccept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--procs", "2", "--label-filter", "keyvalue.ttl || pubsub.queue || lifecycle")
		dir := run.dir
		run.waitFor("[1/2] plugin: ") // its plugin is up: it has all its specs still to run
		victim := procOf(t, filepath.Join(dir, "procs", "1", "shard.json"))
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		code, rep := run.exit()
		if code != report.ExitError || rep.ExitCode != report.ExitError || !strings.Contains(rep.ExitReason, "process 1 exited") {
			t.Errorf("exit %d, report %d %q; want 2 naming process 1\n%s", code, rep.ExitCode, rep.ExitReason, run.out.String())
		}
		if rep.Totals.Passed == 0 {
			t.Errorf("the other process's passed specs are not in the report: %+v", rep.Totals)
		}
	})

	t.Run("SIGTERM stops every process", func(t *testing.T) {
		t.Parallel()
		run := startAccept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--procs", "2")
		dir := run.dir
		run.waitFor(" passed ")
		children := []int{procOf(t, filepath.Join(dir, "procs", "1", "shard.json")), procOf(t, filepath.Join(dir, "procs", "2", "shard.json"))}
		run.sigterm()
		for _, pid := range children {
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("process %d of the run still runs after the run exited", pid)
			}
		}
	})
}

// procOf returns the pid of the process whose command line names the shard
// file (a process of a --procs run).
func procOf(t *testing.T, shard string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "--shard="+shard) {
			return pid
		}
	}
	t.Fatalf("no process runs with --shard=%s", shard)
	return 0
}
