package history

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// regInput, regOutput and regState are the register model's.
type regInput struct {
	kind  string
	value string
}

type regOutput struct {
	found   bool
	value   string
	unknown bool
}

type regState struct {
	present bool
	value   string
}

// RegisterModel is a register per key (keys are checked apart): Set writes
// a value, Get reads it (or finds none), Delete removes it and says whether
// there was one. An operation whose outcome is unknown may have happened or
// not: its output constrains nothing and it leads to both states (a
// nondeterministic step); one that timed out may take effect at any time
// after its invoke and returns at infinity, one the plugin answered with an
// error took effect before the answer or never.
var RegisterModel = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{regState{}} },
	Step: func(state, input, output any) []any {
		st, in, out := state.(regState), input.(regInput), output.(regOutput)
		var next regState
		switch in.kind {
		case OpSet:
			next = regState{present: true, value: in.value}
		case OpGet:
			if out.found == st.present && (!out.found || out.value == st.value) {
				return []any{st}
			}
			return nil
		default: // OpDelete
			if !out.unknown && out.found != st.present {
				return nil
			}
		}
		if out.unknown {
			return []any{st, next}
		}
		return []any{next}
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := "?"
		switch {
		case out.unknown:
			res = "unknown"
		case in.kind == OpSet:
			res = "ok"
		case in.kind == OpGet && out.found:
			res = fmt.Sprintf("%q", out.value)
		case in.kind == OpGet:
			res = "not found"
		default:
			res = fmt.Sprintf("existed=%v", out.found)
		}
		if in.kind == OpSet {
			return fmt.Sprintf("set(%q) -> %s", in.value, res)
		}
		return fmt.Sprintf("%s() -> %s", in.kind, res)
	},
	DescribeState: func(state any) string {
		if st := state.(regState); st.present {
			return fmt.Sprintf("%q", st.value)
		}
		return "(none)"
	},
}).ToModel()

// Operations turns the operations of one key into porcupine's: failed
// operations did not happen and are left out, as are reads whose outcome
// is unknown; an unknown write returns at infinity (it may take effect at
// any time after its invoke), except an unknown Set whose value a read
// returned, which returns when the first such read did, and one whose
// effect nothing observed (no read returned its value, no Delete invoked
// after it found the key), which is left out: whether it happened or not
// changes no answer, and each one left in would multiply the checker's work
// (etcd's robustness tests do the same).
func Operations(ops []KVOp) []porcupine.Operation {
	seen := map[string]time.Duration{} // value -> the first return of a read of it
	for _, op := range ops {
		if op.Kind == OpGet && op.Outcome == OK && op.Found {
			if r, ok := seen[op.Value]; !ok || op.Return < r {
				seen[op.Value] = op.Return
			}
		}
	}
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Failed || (op.Outcome == Unknown && op.Kind == OpGet) {
			continue
		}
		if op.Kind == OpSet && op.Outcome == Unknown {
			if r, ok := seen[op.Value]; ok {
				op.Outcome, op.Return = OK, min(r, op.Return)
				if op.TimedOut {
					op.Return = r
				}
			} else if !foundLater(ops, op.Invoke) {
				continue
			}
		}
		p := porcupine.Operation{ClientId: op.Client, Input: regInput{kind: op.Kind, value: op.Value},
			Call: int64(op.Invoke), Return: int64(op.Return),
			Output: regOutput{found: op.Found, value: op.Value, unknown: op.Outcome == Unknown}}
		if op.Kind == OpSet {
			p.Output = regOutput{unknown: op.Outcome == Unknown}
		}
		if op.Outcome == Unknown && op.TimedOut {
			p.Return = infinity
		}
		out = append(out, p)
	}
	return out
}

// foundLater says whether an OK Delete invoked after t found the key.
func foundLater(ops []KVOp, t time.Duration) bool {
	for _, op := range ops {
		if op.Kind == OpDelete && op.Outcome == OK && op.Found && op.Invoke > t {
			return true
		}
	}
	return false
}

// Verdicts of one key's history.
const (
	Linearizable    = "linearizable"
	NotLinearizable = "not linearizable"
	Undecided       = "undecided"
)

// KeyResult is the check of one key.
type KeyResult struct {
	Key     string `json:"key"`
	Ops     int    `json:"ops"`
	Verdict string `json:"verdict"`
	// Visualization is porcupine's HTML of a non-linearizable history (a
	// file name in the report folder).
	Visualization string `json:"visualization,omitempty"`
	// StaleReads are OK reads that returned a value (or no value) that a
	// write acknowledged before the read began had already replaced.
	StaleReads int `json:"stale_reads"`
	// LostWrites are acknowledged writes that a later read skipped (it saw
	// an older state), or that were gone after the run although no write
	// came after them.
	LostWrites int `json:"acknowledged_writes_lost"`
	// PhantomReads are reads of a value no Set wrote.
	PhantomReads int `json:"phantom_reads,omitempty"`
}

// KVResult is the check of a whole KeyValue history.
type KVResult struct {
	Keys []KeyResult `json:"keys"`
}

// Illegal lists the keys whose history is not linearizable.
func (r KVResult) Illegal() []string {
	var ks []string
	for _, k := range r.Keys {
		if k.Verdict == NotLinearizable {
			ks = append(ks, k.Key)
		}
	}
	return ks
}

// Undecided lists the keys porcupine could not decide within the timeout.
func (r KVResult) Undecided() []string {
	var ks []string
	for _, k := range r.Keys {
		if k.Verdict == Undecided {
			ks = append(ks, k.Key)
		}
	}
	return ks
}

// Totals sums the anomalies over the keys.
func (r KVResult) Totals() (stale, lost, phantom int) {
	for _, k := range r.Keys {
		stale, lost, phantom = stale+k.StaleReads, lost+k.LostWrites, phantom+k.PhantomReads
	}
	return
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// VisualizationFile is the file a key's visualization is written to.
func VisualizationFile(key string) string {
	return "linearizability-" + unsafeName.ReplaceAllString(key, "_") + ".html"
}

// CheckKV checks h key by key with porcupine (each within timeout) and
// counts the anomalies; final holds each key's state read after the run
// healed (absent keys: not found; a key missing from final was not read).
// For a key that is not linearizable it writes porcupine's visualization
// into dir (when dir is not "").
func CheckKV(h *KVHistory, keys []string, final map[string]*string, dir string, timeout time.Duration) (KVResult, error) {
	var res KVResult
	byKey := map[string][]KVOp{}
	for _, op := range h.Ops {
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	for _, key := range keys {
		ops := byKey[key]
		kr := KeyResult{Key: key, Ops: len(ops)}
		result, info := porcupine.CheckOperationsVerbose(RegisterModel, Operations(ops), timeout)
		switch result {
		case porcupine.Ok:
			kr.Verdict = Linearizable
		case porcupine.Illegal:
			kr.Verdict = NotLinearizable
			if dir != "" {
				kr.Visualization = VisualizationFile(key)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return res, err
				}
				if err := porcupine.VisualizePath(RegisterModel, info, filepath.Join(dir, kr.Visualization)); err != nil {
					return res, fmt.Errorf("write the visualization of key %s: %w", key, err)
				}
			}
		default:
			kr.Verdict = Undecided
		}
		fv, read := final[key]
		kr.StaleReads, kr.LostWrites, kr.PhantomReads = anomalies(ops, read, fv)
		res.Keys = append(res.Keys, kr)
	}
	return res, nil
}

// anomalies counts the stale reads, lost acknowledged writes and phantom
// reads of one key's operations; final is the key's value after the run
// (nil: absent) when read is true.
func anomalies(ops []KVOp, read bool, final *string) (stale, lost, phantom int) {
	const inf = time.Duration(infinity)
	ret := func(op KVOp) time.Duration {
		if op.Outcome == Unknown {
			return inf
		}
		return op.Return
	}
	setOf := map[string]KVOp{}
	var writes, deletes []KVOp // OK writes (by return); non-failed deletes (by invoke)
	for _, op := range ops {
		if op.Kind == OpSet && op.Outcome != Failed {
			setOf[op.Value] = op
		}
		if (op.Kind == OpSet || op.Kind == OpDelete) && op.Outcome == OK {
			writes = append(writes, op)
		}
		if op.Kind == OpDelete && op.Outcome != Failed {
			deletes = append(deletes, op)
		}
	}
	sort.Slice(writes, func(i, j int) bool { return writes[i].Return < writes[j].Return })
	sort.Slice(deletes, func(i, j int) bool { return deletes[i].Invoke < deletes[j].Invoke })
	// latest[i] is the write invoked last among writes[:i+1], and latestSet
	// the same among the Sets.
	latest, latestSet := make([]int, len(writes)), make([]int, len(writes))
	for i := range writes {
		latest[i], latestSet[i] = i, -1
		if i > 0 {
			latestSet[i] = latestSet[i-1]
			if writes[latest[i-1]].Invoke > writes[i].Invoke {
				latest[i] = latest[i-1]
			}
		}
		if writes[i].Kind == OpSet && (latestSet[i] < 0 || writes[i].Invoke > writes[latestSet[i]].Invoke) {
			latestSet[i] = i
		}
	}
	// delRet[i] is the latest return of deletes[:i+1].
	delRet := make([]time.Duration, len(deletes))
	for i, d := range deletes {
		delRet[i] = ret(d)
		if i > 0 && delRet[i-1] > delRet[i] {
			delRet[i] = delRet[i-1]
		}
	}
	lostSet := map[string]bool{}
	done := func(before time.Duration) int { // writes that returned before
		return sort.Search(len(writes), func(i int) bool { return writes[i].Return >= before }) - 1
	}
	for _, g := range ops {
		if g.Kind != OpGet || g.Outcome != OK {
			continue
		}
		i := done(g.Invoke)
		if g.Found {
			s, ok := setOf[g.Value]
			if !ok {
				phantom++
				continue
			}
			if i >= 0 && writes[latest[i]].Invoke > ret(s) {
				stale++
				if w := writes[latest[i]]; w.Kind == OpSet {
					lostSet[w.Value] = true
				}
			}
			continue
		}
		// Not found: stale when a Set acknowledged before the read began
		// was invoked after every Delete that could have removed it ended.
		if i < 0 || latestSet[i] < 0 {
			continue
		}
		w := writes[latestSet[i]]
		j := sort.Search(len(deletes), func(k int) bool { return deletes[k].Invoke > g.Return }) - 1
		if j < 0 || delRet[j] < w.Invoke {
			stale++
			lostSet[w.Value] = true
		}
	}
	if read && len(writes) > 0 {
		// The last acknowledged write, if no other write could follow it.
		w := writes[latest[len(writes)-1]]
		last := true
		for _, op := range ops {
			if op != w && (op.Kind == OpSet || op.Kind == OpDelete) && op.Outcome != Failed && ret(op) >= w.Invoke {
				last = false
				break
			}
		}
		if last && w.Kind == OpSet && (final == nil || *final != w.Value) {
			lostSet[w.Value] = true
		}
	}
	return stale, len(lostSet), phantom
}

// Facts says a result's anomalies in words ("" when there are none).
func (r KVResult) Facts() []string {
	var out []string
	stale, lost, phantom := r.Totals()
	if ks := r.Illegal(); len(ks) > 0 {
		out = append(out, fmt.Sprintf("not linearizable on %d of %d keys (%v)", len(ks), len(r.Keys), ks))
	}
	if lost > 0 {
		out = append(out, fmt.Sprintf("%d acknowledged writes lost (a later read saw an older state, or it was gone after the run)", lost))
	}
	if stale > 0 {
		out = append(out, fmt.Sprintf("%d stale reads", stale))
	}
	if phantom > 0 {
		out = append(out, fmt.Sprintf("%d reads of a value never written", phantom))
	}
	return slices.Clip(out)
}
