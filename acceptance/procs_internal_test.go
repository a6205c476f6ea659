package acceptance

import (
	"slices"
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

func TestDropFlags(t *testing.T) {
	in := []string{"--plugin", "p", "--procs", "3", "-procs=2", "--report-dir=x", "-report-dir", "y", "--ginkgo.focus-file=a:1",
		"--plugin-arg=--procs=9", "--seed", "7"}
	got := dropFlags(in, "procs", "report-dir", "ginkgo.focus-file")
	want := []string{"--plugin", "p", "--plugin-arg=--procs=9", "--seed", "7"}
	if !slices.Equal(got, want) {
		t.Errorf("dropFlags:\n got %q\nwant %q", got, want)
	}
}

// TestPartition: groups (a container's Its, Its made at one line) stay in
// one shard, no shard is empty, every selected spec is in one shard and
// no unselected one is, and weights from an earlier report balance them.
func TestPartition(t *testing.T) {
	spec := func(group, focus string, selected bool) previewed {
		return previewed{key: specKey(focus, "direct", group+focus), group: group, focus: focus, selected: selected}
	}
	specs := []previewed{
		spec("ordered", "states.go$:10", true), spec("ordered", "states.go$:10", true), spec("ordered", "states.go$:12", true),
		spec("heavy", "contention.go$:5", true),
		spec("a", "basic.go$:1", true), spec("a", "basic.go$:2", true),
		spec("b", "ttl.go$:1", true), spec("b", "ttl.go$:2", false),
		// One It in two containers (direct and via proxy) ties them.
		spec("c", "shared.go$:1", true), spec("proxy c", "shared.go$:1", true), spec("proxy c", "shared.go$:9", true),
	}
	prev := &report.Report{Specs: []report.Spec{{Location: "contention.go$:5", Via: "direct", Name: "heavycontention.go$:5", DurationMS: 60_000}}}
	shards := partition(specs, 3, prev)
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3: %q", len(shards), shards)
	}
	where := map[string]int{}
	for i, sh := range shards {
		if len(sh) == 0 {
			t.Errorf("shard %d is empty", i)
		}
		for _, l := range sh {
			if _, dup := where[l]; dup {
				t.Errorf("%s is in two shards", l)
			}
			where[l] = i
		}
	}
	together := [][]string{{"states.go$:10", "states.go$:12"}, {"basic.go$:1", "basic.go$:2"}, {"shared.go$:1", "shared.go$:9"}}
	for _, g := range together {
		if where[g[0]] != where[g[1]] {
			t.Errorf("%s and %s are split: %q", g[0], g[1], shards)
		}
	}
	if _, ok := where["ttl.go$:2"]; ok {
		t.Errorf("an unselected spec is in a shard: %q", shards)
	}
	if h := where["contention.go$:5"]; len(shards[h]) != 1 {
		t.Errorf("the minute-long spec shares its shard with %q; the others should take the rest", shards[h])
	}
	if got := partition(specs[:3], 4, nil); len(got) != 1 {
		t.Errorf("one group in 4 processes: %d shards, want 1 (run in one process)", len(got))
	}
}

// TestMergeProcs: the merge is a harness error whenever it cannot vouch for
// every selected spec, and otherwise judges like one run.
func TestMergeProcs(t *testing.T) {
	specs := []previewed{
		{key: specKey("l.go:1", "direct", "Lifecycle starts"), selected: true},
		{key: specKey("k.go:1", "direct", "KeyValue sets"), selected: true},
		{key: specKey("k.go:2", "direct", "KeyValue filtered out"), selected: false},
	}
	s := func(loc, name string, o report.Outcome) report.Spec {
		return report.Spec{Location: loc, Via: "direct", Name: name, Outcome: o,
			Capability: map[bool]string{true: "lifecycle", false: "keyvalue.basic"}[strings.HasPrefix(name, "Lifecycle")]}
	}
	run := func(a, b report.Outcome) report.Run {
		return report.Run{Described: true, Declared: capability.Set{capability.KeyValueBasic: true},
			Specs: []report.Spec{s("l.go:1", "Lifecycle starts", a), s("k.go:1", "KeyValue sets", b), s("k.go:2", "KeyValue filtered out", report.Disabled)}}
	}
	procsWith := func(t *testing.T, runs ...*report.Run) []*procRun {
		var ps []*procRun
		for i, r := range runs {
			p := &procRun{n: i + 1, dir: t.TempDir(), code: 1, state: "exit status 1"}
			if r != nil {
				if err := writeJudgeFile(p.dir, *r); err != nil {
					t.Fatal(err)
				}
				if _, err := (&report.Report{Schema: report.SchemaVersion}).WriteJSON(p.dir); err != nil {
					t.Fatal(err)
				}
			}
			ps = append(ps, p)
		}
		return ps
	}
	cfg := Config{ReportDir: t.TempDir()}
	sc := types.SuiteConfig{}
	for _, tc := range []struct {
		name   string
		runs   []*report.Run
		code   int
		reason string
	}{
		{"each spec once", []*report.Run{ptr(run(report.Passed, report.Disabled)), ptr(run(report.Disabled, report.Passed))}, report.ExitOK, ""},
		{"a failure in one", []*report.Run{ptr(run(report.Passed, report.Disabled)), ptr(run(report.Disabled, report.Failed))}, report.ExitFailed, ""},
		{"a process without reports", []*report.Run{ptr(run(report.Passed, report.Disabled)), nil}, report.ExitError, "process 2 exited (exit status 1) without its reports"},
		{"no process with reports", []*report.Run{nil, nil}, report.ExitError, "process 1 exited"},
		{"a spec nobody ran", []*report.Run{ptr(run(report.Passed, report.Disabled)), ptr(run(report.Disabled, report.Disabled))}, report.ExitError, ""},
		{"a spec two ran", []*report.Run{ptr(run(report.Passed, report.Passed)), ptr(run(report.Disabled, report.Passed))}, report.ExitError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := mergeProcs(cfg, sc, specs, procsWith(t, tc.runs...), nil)
			if rep.ExitCode != tc.code || !strings.Contains(rep.ExitReason, tc.reason) {
				t.Errorf("exit %d %q, want %d containing %q", rep.ExitCode, rep.ExitReason, tc.code, tc.reason)
			}
		})
	}
	t.Run("processes that disagree on the spec list", func(t *testing.T) {
		short := run(report.Passed, report.Disabled)
		short.Specs = short.Specs[:2]
		rep := mergeProcs(cfg, sc, specs, procsWith(t, &short, ptr(run(report.Disabled, report.Passed))), nil)
		if rep.ExitCode != report.ExitError || !strings.Contains(rep.ExitReason, "reported 2 specs, the preview 3") {
			t.Errorf("exit %d %q, want 2 naming the counts", rep.ExitCode, rep.ExitReason)
		}
	})
}

func ptr[T any](v T) *T { return &v }
