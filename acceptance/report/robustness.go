package report

import (
	"fmt"
	"strings"

	"github.com/prism-suite/prism/harness/history"
	"github.com/prism-suite/prism/harness/nemesis"
	"github.com/prism-suite/prism/proto/capability"
)

// RobustnessSuite is the capability.Info.Suite of the capabilities a
// robustness run judges rather than specs (keyvalue.linearizable).
const RobustnessSuite = "robustness"

// Robustness is what a robustness run (prism-accept --robustness) recorded
// and found: the faults injected, the workloads' figures and checks, and the
// anomalies as facts. It is in report.json's "robustness" field.
type Robustness struct {
	Nemesis    []string `json:"nemesis"`
	DurationMS int64    `json:"duration_ms"`
	Clients    int      `json:"clients"`
	Keys       int      `json:"keys"`
	// Events are the faults injected, each with when it was injected,
	// healed and when the backend was healthy again.
	Events []RobustEvent `json:"events"`
	// KeyValue is the KeyValue workload's (nil: not run).
	KeyValue *RobustKV `json:"keyvalue,omitempty"`
	// PubSub is the durable PubSub workload's (nil: not run).
	PubSub *history.PubSubResult `json:"pubsub,omitempty"`
	// Facts are the anomalies seen, in words, whatever was declared.
	Facts []string `json:"facts,omitempty"`
	// Errors are the harness's troubles (a fault that could not be
	// injected or healed, a backend that did not recover, a history
	// porcupine could not decide).
	Errors []string `json:"errors,omitempty"`
}

// RobustEvent is one fault with its time to recover.
type RobustEvent struct {
	nemesis.Event
	// RecoverMS is the time from the heal to the backend healthy again
	// (nemesis.Event.RecoverTime).
	RecoverMS float64 `json:"recover_ms"`
	// ServiceRecoverMS is the time from the heal until the first KeyValue
	// operation invoked after it returned OK through the plugin (-1: none
	// did).
	ServiceRecoverMS float64 `json:"service_recover_ms"`
	// OpsPerSec is the KeyValue workload's throughput while the fault was
	// in (operations invoked between Injected and Healed).
	OpsPerSec float64 `json:"ops_per_sec"`
	// PublishRecoverMS is the time from the heal until the first Publish
	// invoked after it returned OK (-1: none did; 0: no PubSub workload),
	// and PublishesPerSec the OK Publishes per second while the fault was in.
	PublishRecoverMS float64 `json:"publish_recover_ms"`
	PublishesPerSec  float64 `json:"publishes_per_sec"`
}

// RobustKV is the KeyValue workload's figures and check.
type RobustKV struct {
	Ops int `json:"ops"`
	// ByOutcome counts the operations by outcome (ok, failed, unknown).
	ByOutcome map[history.Outcome]int `json:"by_outcome"`
	// OpsPerSec is over the whole run; DuringFaultsOpsPerSec over the
	// operations invoked while a fault was in (Injected..Healed).
	OpsPerSec             float64 `json:"ops_per_sec"`
	DuringFaultsOpsPerSec float64 `json:"during_faults_ops_per_sec"`
	history.KVResult
}

// RobustnessRun is what JudgeRobustness judges.
type RobustnessRun struct {
	Described bool
	Declared  capability.Set
	Setup     *SetupFailure
	Result    *Robustness
}

// JudgeRobustness is the verdict of a robustness run, per capability it
// checks, with the exit code (the same codes as Judge):
//   - setup failed: lifecycle failed (the plugin) or error (the harness);
//   - keyvalue.linearizable: declared and a key's history is not
//     linearizable: failed; declared and clean: certified; not declared:
//     "not declared" with the anomalies as facts in the reason;
//   - pubsub.durable: declared and an acknowledged message lost or one
//     delivered after its ack: failed; else certified (redeliveries are a
//     fact); not declared: not run;
//   - any harness error (nemesis, recovery, an undecided history): exit 2
//     unless something failed; nothing checked: exit 64.
func JudgeRobustness(run RobustnessRun) (caps []Capability, exit int, why string) {
	if run.Setup != nil {
		v := VerdictError
		if run.Setup.Outcome == Failed {
			v = VerdictFail
		}
		c := Capability{Name: string(capability.Lifecycle), Declared: true, Verdict: v, Reason: run.Setup.Message}
		if v == VerdictFail {
			return []Capability{c}, ExitFailed, "setup failed: " + firstLine(run.Setup.Message)
		}
		return []Capability{c}, ExitError, "harness error: " + firstLine(run.Setup.Message)
	}
	r := run.Result
	if r.KeyValue == nil && r.PubSub == nil && len(r.Errors) > 0 {
		return nil, ExitError, "harness error: " + strings.Join(r.Errors, "; ")
	}
	var failed, errored []string
	if kv := r.KeyValue; kv != nil {
		c := Capability{Name: string(capability.KeyValueLinearizable), Declared: run.Declared.Has(capability.KeyValueLinearizable)}
		facts := strings.Join(kv.Facts(), "; ")
		switch {
		case !c.Declared:
			c.Verdict, c.Reason = NotDeclared, "facts under faults: "+orNone(facts)
		case len(kv.Illegal()) > 0:
			c.Verdict, c.Failed = VerdictFail, len(kv.Illegal())
			c.Reason = facts + "; visualization: " + strings.Join(visualizations(kv.KVResult), ", ")
			failed = append(failed, c.Name)
		case kv.ByOutcome[history.OK] == 0:
			c.Verdict, c.Errors = VerdictError, 1
			c.Reason = "no KeyValue call succeeded: nothing to check"
			errored = append(errored, c.Name)
		case len(kv.Undecided()) > 0:
			c.Verdict, c.Errors = VerdictError, len(kv.Undecided())
			c.Reason = fmt.Sprintf("porcupine could not decide keys %v within its timeout", kv.Undecided())
			errored = append(errored, c.Name)
		default:
			c.Verdict, c.Passed = Certified, len(kv.Keys)
			c.Reason = fmt.Sprintf("%d operations on %d keys linearizable", kv.Ops, len(kv.Keys))
		}
		caps = append(caps, c)
	}
	if ps := r.PubSub; ps != nil {
		c := Capability{Name: string(capability.PubSubDurable), Declared: run.Declared.Has(capability.PubSubDurable)}
		facts := strings.Join(ps.Facts(), "; ")
		switch {
		case !c.Declared:
			c.Verdict, c.Reason = NotDeclared, "facts under faults: "+orNone(facts)
		case ps.Acked == 0:
			c.Verdict, c.Errors = VerdictError, 1
			c.Reason = "no Publish was acknowledged: nothing to check (first error: " + ps.FirstError + ")"
			errored = append(errored, c.Name)
		case ps.Lost > 0 || ps.AfterAck > 0:
			c.Verdict, c.Failed, c.Reason = VerdictFail, ps.Lost+ps.AfterAck, "under faults: "+facts
			failed = append(failed, c.Name)
		default:
			c.Verdict, c.Passed, c.Reason = Certified, ps.Acked, "under faults: "+orNone(facts)
		}
		caps = append(caps, c)
	}
	if len(r.Errors) > 0 {
		// The run did not do all it was asked (a fault not injected, not
		// healed): clean checks of it are not a certification.
		for i := range caps {
			if caps[i].Verdict == Certified {
				caps[i].Verdict, caps[i].Errors, caps[i].Passed = VerdictError, 1, 0
				caps[i].Reason += "; not a verdict: the run was incomplete: " + strings.Join(r.Errors, "; ")
			}
		}
	}
	switch {
	case len(failed) > 0:
		return caps, ExitFailed, "failed under faults: " + strings.Join(failed, ", ")
	case len(errored) > 0 || len(r.Errors) > 0:
		return caps, ExitError, "harness error: " + strings.Join(append(errored, r.Errors...), "; ")
	case len(caps) == 0:
		return caps, ExitUsage, "nothing to check: the plugin declares neither keyvalue.basic nor pubsub.durable"
	}
	return caps, ExitOK, ""
}

func orNone(facts string) string {
	if facts == "" {
		return "no anomaly seen"
	}
	return facts
}

func visualizations(r history.KVResult) []string {
	var out []string
	for _, k := range r.Keys {
		if k.Visualization != "" {
			out = append(out, k.Visualization)
		}
	}
	return out
}
