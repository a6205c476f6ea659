package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk/sdktest"
	"github.com/prism-suite/prism/harness/history"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// TestRunKVAgainstMemstore records a real history (run with -race) and
// finds it linearizable, every operation with an outcome and ordered times.
func TestRunKVAgainstMemstore(t *testing.T) {
	conn := sdktest.Serve(t, memstore.New(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	o := history.KVOptions{Clients: 4, Keys: 2, Prefix: "t-"}
	h := history.RunKV(ctx, keyvaluev1.NewKeyValueClient(conn), o)
	if len(h.Ops) < 100 {
		t.Fatalf("%d ops in 700ms, want at least 100", len(h.Ops))
	}
	kinds := map[string]int{}
	for _, op := range h.Ops {
		kinds[op.Kind]++
		if op.Outcome != history.OK || op.Return < op.Invoke {
			t.Fatalf("op %+v: want ok with return after invoke", op)
		}
	}
	if kinds[history.OpSet] == 0 || kinds[history.OpGet] == 0 || kinds[history.OpDelete] == 0 {
		t.Fatalf("kinds %v: want sets, gets and deletes", kinds)
	}
	res, err := history.CheckKV(h, o.KeyNames(), nil, "", 10*time.Second)
	if err != nil || len(res.Illegal()) > 0 || len(res.Undecided()) > 0 {
		t.Fatalf("check: %v, %+v", err, res)
	}
}
