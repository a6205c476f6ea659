package report_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

func spec(c capability.Name, o report.Outcome, reason string) report.Spec {
	return report.Spec{Capability: string(c), Name: string(c) + " spec", Outcome: o, Reason: reason}
}

func probe(c capability.Name, o report.Outcome) report.Spec {
	s := spec(c, o, "")
	s.Probe = true
	return s
}

// healthy is a run of memstore-like plugin where everything it declares passed.
func healthy() report.Run {
	return report.Run{
		Described: true,
		Declared:  capability.NewSet(capability.KeyValueBasic, capability.KeyValueTTL),
		Specs: []report.Spec{
			spec(capability.Lifecycle, report.Passed, ""),
			spec(capability.KeyValueBasic, report.Passed, ""),
			spec(capability.KeyValueTTL, report.Passed, ""),
			spec(capability.PubSubBasic, report.Skipped, "pubsub.basic is not declared by this plugin"),
		},
	}
}

func with(r report.Run, edit func(*report.Run)) report.Run {
	r.Specs = append([]report.Spec(nil), r.Specs...)
	edit(&r)
	return r
}

func verdictOf(caps []report.Capability, n capability.Name) report.Capability {
	for _, c := range caps {
		if c.Name == string(n) {
			return c
		}
	}
	return report.Capability{}
}

func TestJudge(t *testing.T) {
	type want struct {
		exit     int
		why      string // a part of the exit reason
		verdicts map[capability.Name]report.Verdict
		reasons  map[capability.Name]string // a part of the capability's reason
	}
	cases := []struct {
		name string
		run  report.Run
		want want
	}{
		{"everything declared is certified", healthy(), want{exit: report.ExitOK,
			verdicts: map[capability.Name]report.Verdict{capability.Lifecycle: report.Certified, capability.KeyValueBasic: report.Certified,
				capability.KeyValueTTL: report.Certified, capability.PubSubBasic: report.NotDeclared, capability.KeyValueScan: report.NotDeclared}}},
		{"a selection that selects no spec is a usage error naming it", with(healthy(), func(r *report.Run) {
			r.Selection = `focus "nothing is called xyzzy"`
			for i := range r.Specs {
				r.Specs[i].Outcome = report.Disabled
			}
		}), want{exit: report.ExitUsage, why: `focus "nothing is called xyzzy" selects no spec`}},
		{"a plugin that cannot launch fails lifecycle with the launch error", report.Run{
			Setup: &report.SetupFailure{Outcome: report.Failed, Message: "launch ./dead: read handshake: plugin closed stdout (exit status 3); stderr:\nboom"},
			Specs: []report.Spec{spec(capability.Lifecycle, report.Failed, "plugin setup failed"), spec(capability.KeyValueBasic, report.Failed, "plugin setup failed")},
		}, want{exit: report.ExitFailed, why: "failed: lifecycle",
			verdicts: map[capability.Name]report.Verdict{capability.Lifecycle: report.VerdictFail, capability.KeyValueBasic: report.NotTested},
			reasons:  map[capability.Name]string{capability.Lifecycle: "exit status 3); stderr:\nboom", capability.KeyValueBasic: "never described itself"}}},
		{"a plugin that cannot launch fails the run even when every spec was skipped", report.Run{
			Setup: &report.SetupFailure{Outcome: report.Failed, Message: "launch: exit status 3"},
			Specs: []report.Spec{spec(capability.KeyValueTTL, report.Skipped, "skipped")},
		}, want{exit: report.ExitFailed, verdicts: map[capability.Name]report.Verdict{capability.Lifecycle: report.VerdictFail}}},
		{"a backend the harness cannot start is a harness error of lifecycle", report.Run{
			Setup: &report.SetupFailure{Outcome: report.Error, Message: "harness: start redis backend: no docker"},
			Specs: []report.Spec{spec(capability.Lifecycle, report.Error, "harness error"), spec(capability.KeyValueBasic, report.Error, "harness error")},
		}, want{exit: report.ExitError, why: "harness error: lifecycle",
			verdicts: map[capability.Name]report.Verdict{capability.Lifecycle: report.VerdictError, capability.KeyValueBasic: report.NotTested},
			reasons:  map[capability.Name]string{capability.Lifecycle: "start redis backend"}}},
		{"one failed spec fails its capability and the run", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, spec(capability.KeyValueTTL, report.Failed, "got value, want NotFound"))
		}), want{exit: report.ExitFailed, why: "failed: keyvalue.ttl",
			verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.VerdictFail, capability.KeyValueBasic: report.Certified}}},
		{"a harness error is an error, not a failure", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, spec(capability.KeyValueTTL, report.Error, "harness: take the backend down"))
		}), want{exit: report.ExitError, why: "harness error: keyvalue.ttl",
			verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.VerdictError}}},
		{"a failure outranks a harness error", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, spec(capability.KeyValueTTL, report.Error, "harness"), spec(capability.KeyValueBasic, report.Failed, "lost"))
		}), want{exit: report.ExitFailed, verdicts: map[capability.Name]report.Verdict{capability.KeyValueBasic: report.VerdictFail, capability.KeyValueTTL: report.VerdictError}}},
		{"a failed spec of no capability fails the run", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, report.Spec{Name: "unlabelled", Outcome: report.Failed})
		}), want{exit: report.ExitFailed, why: "1 specs failed"}},
		{"a harness error in a spec of an undeclared capability still errors the run", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, spec(capability.PubSubBasic, report.Error, "harness: the proxy did not start"))
		}), want{exit: report.ExitError, why: "1 specs reported a harness error",
			verdicts: map[capability.Name]report.Verdict{capability.PubSubBasic: report.NotDeclared}}},
		{"a required capability that is not declared fails", with(healthy(), func(r *report.Run) {
			r.Required = capability.NewSet(capability.KeyValueScan)
		}), want{exit: report.ExitFailed, why: "failed: keyvalue.scan",
			verdicts: map[capability.Name]report.Verdict{capability.KeyValueScan: report.VerdictFail},
			reasons:  map[capability.Name]string{capability.KeyValueScan: "required, but not declared"}}},
		{"a required capability the selection excluded fails, saying so", with(healthy(), func(r *report.Run) {
			r.Required = capability.NewSet(capability.KeyValueTTL)
			r.Selection = `label filter "lifecycle"`
			for i := range r.Specs {
				if r.Specs[i].Capability != string(capability.Lifecycle) {
					r.Specs[i].Outcome = report.Disabled
				}
			}
		}), want{exit: report.ExitFailed, why: "failed: keyvalue.ttl",
			verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.VerdictFail, capability.KeyValueBasic: report.NotTested},
			reasons:  map[capability.Name]string{capability.KeyValueTTL: `required, but not tested: excluded by the selection label filter "lifecycle"`}}},
		{"a required capability the run has no spec of fails, saying so", with(healthy(), func(r *report.Run) {
			r.Declared[capability.RegistryBasic] = true
			r.Required = capability.NewSet(capability.RegistryBasic)
		}), want{exit: report.ExitFailed, verdicts: map[capability.Name]report.Verdict{capability.RegistryBasic: report.VerdictFail},
			reasons: map[capability.Name]string{capability.RegistryBasic: "required, but not tested: this run has no spec of it"}}},
		{"a required capability whose specs were all skipped fails, saying why", with(healthy(), func(r *report.Run) {
			r.Required = capability.NewSet(capability.KeyValueTTL)
			r.Specs[2] = spec(capability.KeyValueTTL, report.Skipped, "the embedded backend cannot pause")
		}), want{exit: report.ExitFailed,
			verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.VerdictFail},
			reasons:  map[capability.Name]string{capability.KeyValueTTL: "required, but not tested: all 1 selected specs were skipped (first: the embedded backend cannot pause)"}}},
		{"a required capability with a harness error fails", with(healthy(), func(r *report.Run) {
			r.Required = capability.NewSet(capability.KeyValueTTL)
			r.Specs[2] = spec(capability.KeyValueTTL, report.Error, "harness")
		}), want{exit: report.ExitFailed, verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.VerdictFail},
			reasons: map[capability.Name]string{capability.KeyValueTTL: "required, but error"}}},
		{"a certified capability says how many of its specs were skipped", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, spec(capability.KeyValueTTL, report.Skipped, "the embedded backend cannot pause"))
		}), want{exit: report.ExitOK, verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.Certified},
			reasons: map[capability.Name]string{capability.KeyValueTTL: "1 of 2 selected specs skipped (first: the embedded backend cannot pause)"}}},
		{"a required capability that is certified passes", with(healthy(), func(r *report.Run) {
			r.Required = capability.NewSet(capability.KeyValueTTL)
		}), want{exit: report.ExitOK, verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.Certified}}},
		{"a declared capability whose selected specs were all skipped is not measured: an error", with(healthy(), func(r *report.Run) {
			r.Specs[2] = spec(capability.KeyValueTTL, report.Skipped, "neither backend can expire a user's credentials")
		}), want{exit: report.ExitError, why: "declared but not measured (every selected spec was skipped): keyvalue.ttl",
			verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.NotTested}}},
		{"a declared capability outside the selection does not fail the run", with(healthy(), func(r *report.Run) {
			r.Selection = `label filter "keyvalue.basic"`
			r.Specs[2].Outcome = report.Disabled
		}), want{exit: report.ExitOK, verdicts: map[capability.Name]report.Verdict{capability.KeyValueTTL: report.NotTested},
			reasons: map[capability.Name]string{capability.KeyValueTTL: `excluded by the selection label filter "keyvalue.basic"`}}},
		{"a selection of only undeclared capabilities certifies nothing: usage", report.Run{Described: true,
			Selection: `label filter "pubsub.durable"`,
			Specs:     []report.Spec{spec(capability.Lifecycle, report.Disabled, ""), spec(capability.PubSubDurable, report.Skipped, "pubsub.durable is not declared by this plugin")},
		}, want{exit: report.ExitUsage, why: "no spec ran", verdicts: map[capability.Name]report.Verdict{capability.PubSubDurable: report.NotDeclared}}},
		{"probes that all pass: works but undeclared, and no failure", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, probe(capability.KeyValueScan, report.Passed), probe(capability.KeyValueScan, report.Passed))
		}), want{exit: report.ExitOK, verdicts: map[capability.Name]report.Verdict{capability.KeyValueScan: report.WorksUndeclared}}},
		{"a failed probe is not declared and never fails the run", with(healthy(), func(r *report.Run) {
			r.Specs = append(r.Specs, probe(capability.KeyValueScan, report.Passed), probe(capability.KeyValueScan, report.Skipped))
		}), want{exit: report.ExitOK, verdicts: map[capability.Name]report.Verdict{capability.KeyValueScan: report.NotDeclared}}},
		{"a run where only probes passed certifies nothing", report.Run{Described: true,
			Specs: []report.Spec{spec(capability.Lifecycle, report.Disabled, ""), probe(capability.KeyValueScan, report.Passed)},
		}, want{exit: report.ExitUsage, verdicts: map[capability.Name]report.Verdict{capability.KeyValueScan: report.WorksUndeclared}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			caps, exit, why := report.Judge(tc.run)
			if exit != tc.want.exit {
				t.Errorf("exit %d (%s), want %d", exit, why, tc.want.exit)
			}
			if !strings.Contains(why, tc.want.why) {
				t.Errorf("reason %q does not say %q", why, tc.want.why)
			}
			if exit == report.ExitOK && why != "" {
				t.Errorf("exit 0 with a reason %q", why)
			}
			for n, v := range tc.want.verdicts {
				if got := verdictOf(caps, n); got.Verdict != v {
					t.Errorf("%s: verdict %q (%s), want %q", n, got.Verdict, got.Reason, v)
				}
			}
			for n, r := range tc.want.reasons {
				if got := verdictOf(caps, n); !strings.Contains(got.Reason, r) {
					t.Errorf("%s: reason %q does not say %q", n, got.Reason, r)
				}
			}
		})
	}
}

// TestJudgeInvariants checks the contract's invariants on random runs: exit
// 0 only if nothing failed or errored, a spec (not a probe) passed, every
// required capability and every declared one with a selected spec is
// certified; a failed spec always exits 1; nothing selected always exits 64.
func TestJudgeInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := capability.All()
	outcomes := []report.Outcome{report.Passed, report.Failed, report.Skipped, report.Disabled, report.Error}
	for i := range 20_000 {
		run := report.Run{Described: rng.IntN(8) > 0, Declared: capability.Set{}, Required: capability.Set{}}
		for _, info := range all {
			if rng.IntN(2) == 0 {
				run.Declared[info.Name] = true
			}
			if rng.IntN(6) == 0 {
				run.Required[info.Name] = true
			}
		}
		if !run.Described && rng.IntN(2) == 0 {
			run.Setup = &report.SetupFailure{Outcome: []report.Outcome{report.Failed, report.Error}[rng.IntN(2)], Message: "setup"}
		}
		for range rng.IntN(12) {
			s := spec(all[rng.IntN(len(all))].Name, outcomes[rng.IntN(len(outcomes))], "r")
			if !run.Declared.Has(capability.Name(s.Capability)) && rng.IntN(2) == 0 && (s.Outcome == report.Passed || s.Outcome == report.Skipped) {
				s.Probe = true
			}
			run.Specs = append(run.Specs, s)
		}
		caps, exit, why := report.Judge(run)
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("run %d: exit %d (%s): "+format+"\n%+v", append([]any{i, exit, why}, append(a, run)...)...)
		}
		selected, passed := 0, 0
		for _, s := range run.Specs {
			if s.Outcome != report.Disabled {
				selected++
			}
			if s.Outcome == report.Passed && !s.Probe {
				passed++
			}
			if s.Outcome == report.Failed && selected > 0 && exit != report.ExitFailed {
				fail("a spec failed, want exit 1")
			}
		}
		if selected == 0 {
			if exit != report.ExitUsage {
				fail("nothing selected, want exit 64")
			}
			continue
		}
		if run.Setup != nil && run.Setup.Outcome == report.Failed && exit != report.ExitFailed {
			fail("the plugin could not be set up, want exit 1")
		}
		if exit != report.ExitOK {
			if why == "" {
				fail("no reason for a non-zero exit")
			}
			continue
		}
		if passed == 0 {
			fail("exit 0 although no spec passed")
		}
		for _, s := range run.Specs {
			if s.Outcome == report.Failed || s.Outcome == report.Error {
				fail("exit 0 with a %s spec", s.Outcome)
			}
		}
		for _, c := range caps {
			n := capability.Name(c.Name)
			if run.Required.Has(n) && c.Verdict != report.Certified {
				fail("exit 0 with required %s %s", n, c.Verdict)
			}
			inSelection := false
			for _, s := range run.Specs {
				inSelection = inSelection || (s.Capability == c.Name && s.Outcome != report.Disabled)
			}
			if c.Declared && inSelection && c.Verdict != report.Certified {
				fail("exit 0 with declared %s %s inside the selection", n, c.Verdict)
			}
		}
	}
}
