package report

import (
	"testing"

	"github.com/prism-suite/prism/harness/history"
	"github.com/prism-suite/prism/proto/capability"
)

func kvRun(declared bool, keys ...history.KeyResult) RobustnessRun {
	d := capability.NewSet(capability.KeyValueBasic)
	if declared {
		d[capability.KeyValueLinearizable] = true
	}
	return RobustnessRun{Described: true, Declared: d, Result: &Robustness{KeyValue: &RobustKV{
		Ops: 10, ByOutcome: map[history.Outcome]int{history.OK: 10}, KVResult: history.KVResult{Keys: keys}}}}
}

func TestJudgeRobustness(t *testing.T) {
	clean := history.KeyResult{Key: "k0", Verdict: history.Linearizable}
	bad := history.KeyResult{Key: "k1", Verdict: history.NotLinearizable, LostWrites: 3, Visualization: "linearizability-k1.html"}
	for _, tc := range []struct {
		name    string
		run     RobustnessRun
		verdict Verdict
		exit    int
	}{
		{"declared and clean", kvRun(true, clean), Certified, ExitOK},
		{"declared and violated", kvRun(true, clean, bad), VerdictFail, ExitFailed},
		{"not declared and violated: facts", kvRun(false, clean, bad), NotDeclared, ExitOK},
		{"undecided", kvRun(true, history.KeyResult{Key: "k", Verdict: history.Undecided}), VerdictError, ExitError},
	} {
		caps, exit, why := JudgeRobustness(tc.run)
		if len(caps) != 1 || caps[0].Verdict != tc.verdict || exit != tc.exit {
			t.Errorf("%s: %+v exit %d (%s), want %s exit %d", tc.name, caps, exit, why, tc.verdict, tc.exit)
		}
	}
	// Not one call succeeded: nothing was measured, never certified.
	run := kvRun(true, clean)
	run.Result.KeyValue.ByOutcome = map[history.Outcome]int{history.Unknown: 10}
	if caps, exit, _ := JudgeRobustness(run); caps[0].Verdict != VerdictError || exit != ExitError {
		t.Errorf("no OK call: %+v exit %d, want error, exit 2", caps, exit)
	}
	// A harness error elsewhere (the nemesis) makes a clean run exit 2.
	run = kvRun(true, clean)
	run.Result.Errors = []string{"nemesis kill: inject: boom"}
	if caps, exit, _ := JudgeRobustness(run); exit != ExitError || caps[0].Verdict != VerdictError {
		t.Errorf("nemesis error: %+v exit %d, want error (never certified), exit 2", caps, exit)
	}
	_, _, why := JudgeRobustness(kvRun(false, clean, bad))
	caps, _, _ := JudgeRobustness(kvRun(false, clean, bad))
	if why != "" || caps[0].Reason == "" {
		t.Errorf("facts of an undeclared capability: reason %q, why %q", caps[0].Reason, why)
	}
}
