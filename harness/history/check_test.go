package history

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func op(client int, kind, key, value string, found bool, outcome Outcome, invoke, ret int) KVOp {
	return KVOp{Client: client, Kind: kind, Key: key, Value: value, Found: found, Outcome: outcome,
		Invoke: time.Duration(invoke) * time.Millisecond, Return: time.Duration(ret) * time.Millisecond}
}

func check(t *testing.T, dir string, ops ...KVOp) KeyResult {
	t.Helper()
	res, err := CheckKV(&KVHistory{Ops: ops}, []string{"k"}, nil, dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return res.Keys[0]
}

func TestLinearizableHistory(t *testing.T) {
	kr := check(t, "",
		op(0, OpSet, "k", "a", false, OK, 0, 10),
		op(1, OpGet, "k", "a", true, OK, 5, 15), // concurrent with the set: may see it
		op(1, OpSet, "k", "b", false, OK, 20, 30),
		op(0, OpGet, "k", "b", true, OK, 40, 50),
		op(0, OpDelete, "k", "", true, OK, 60, 70),
		op(1, OpGet, "k", "", false, OK, 80, 90),
	)
	if kr.Verdict != Linearizable || kr.StaleReads != 0 || kr.LostWrites != 0 {
		t.Fatalf("got %+v, want linearizable without anomalies", kr)
	}
}

// A read after an acknowledged write that sees the value before it: the
// write was lost (or the read is stale).
func TestStaleReadIsIllegalWithVisualization(t *testing.T) {
	dir := t.TempDir()
	kr := check(t, dir,
		op(0, OpSet, "k", "a", false, OK, 0, 10),
		op(1, OpSet, "k", "b", false, OK, 20, 30),
		op(0, OpGet, "k", "a", true, OK, 40, 50),
	)
	if kr.Verdict != NotLinearizable || kr.StaleReads != 1 || kr.LostWrites != 1 {
		t.Fatalf("got %+v, want not linearizable, 1 stale read, 1 write lost", kr)
	}
	b, err := os.ReadFile(filepath.Join(dir, kr.Visualization))
	if err != nil || !strings.Contains(string(b), `set(\"b\")`) {
		t.Fatalf("visualization %s: %v (%d bytes)", kr.Visualization, err, len(b))
	}
}

// An unknown write may have happened: a read may see it or not.
func TestUnknownWriteMayOrMayNotHappen(t *testing.T) {
	for _, seen := range []bool{true, false} {
		get := op(1, OpGet, "k", "a", true, OK, 40, 50)
		if seen {
			get.Value = "b"
		}
		kr := check(t, "",
			op(0, OpSet, "k", "a", false, OK, 0, 10),
			op(0, OpSet, "k", "b", false, Unknown, 20, 1000),
			get,
		)
		if kr.Verdict != Linearizable {
			t.Fatalf("seen=%v: got %+v, want linearizable", seen, kr)
		}
	}
	// A failed write did not happen: a read that sees it is illegal.
	kr := check(t, "",
		op(0, OpSet, "k", "a", false, OK, 0, 10),
		op(0, OpSet, "k", "b", false, Failed, 20, 30),
		op(1, OpGet, "k", "b", true, OK, 40, 50),
	)
	if kr.Verdict != NotLinearizable || kr.PhantomReads != 1 {
		t.Fatalf("got %+v, want not linearizable with a phantom read", kr)
	}
}

func TestLostFinalWrite(t *testing.T) {
	ops := []KVOp{op(0, OpSet, "k", "a", false, OK, 0, 10), op(0, OpSet, "k", "b", false, OK, 20, 30)}
	a := "a"
	res, err := CheckKV(&KVHistory{Ops: ops}, []string{"k"}, map[string]*string{"k": &a}, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys[0].LostWrites != 1 {
		t.Fatalf("got %+v, want the last write lost", res.Keys[0])
	}
	b := "b"
	res, _ = CheckKV(&KVHistory{Ops: ops}, []string{"k"}, map[string]*string{"k": &b}, "", time.Second)
	if res.Keys[0].LostWrites != 0 {
		t.Fatalf("got %+v, want nothing lost", res.Keys[0])
	}
}

// A Delete answered with an error (not a timeout) took effect before the
// answer or never: a later read may see the value or not, but a read that
// sees a value after an acknowledged later Delete is still illegal.
func TestUnknownDeleteIsEitherWay(t *testing.T) {
	for _, found := range []bool{true, false} {
		get := op(1, OpGet, "k", "", false, OK, 40, 50)
		if found {
			get.Value, get.Found = "a", true
		}
		kr := check(t, "",
			op(0, OpSet, "k", "a", false, OK, 0, 10),
			op(0, OpDelete, "k", "", false, Unknown, 20, 30),
			get,
		)
		if kr.Verdict != Linearizable {
			t.Fatalf("found=%v: got %+v, want linearizable", found, kr)
		}
	}
	kr := check(t, "",
		op(0, OpSet, "k", "a", false, OK, 0, 10),
		op(0, OpDelete, "k", "", false, Unknown, 20, 30),
		op(0, OpDelete, "k", "", false, OK, 35, 38),
		op(1, OpGet, "k", "a", true, OK, 40, 50),
	)
	if kr.Verdict != NotLinearizable {
		t.Fatalf("got %+v, want not linearizable", kr)
	}
}
