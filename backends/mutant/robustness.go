package mutant

import (
	"context"
	"time"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// AckBeforeStore is the robustness mutant: it answers Set OK at once and
// stores the value a little later, in the background. A robustness run
// (prism-accept --robustness) must report it as a linearizability failure
// (a read after the acknowledged write sees the older value); the suites'
// single-client specs may not see it, so it is not among All's mutants.
const AckBeforeStore = "ack-before-store"

// ackDelay is how long an acknowledged Set waits before it is stored.
const ackDelay = 30 * time.Millisecond

// robustnessMutants break promises only a robustness run checks.
var robustnessMutants = []Mutant{
	{Name: AckBeforeStore, Breaks: capability.KeyValueLinearizable,
		Defect: "acknowledges Set before storing it: the value is stored 30ms later, in the background",
		unary: on("Set", func(ctx context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			go func() {
				time.Sleep(ackDelay)
				_, _ = call(req)
			}()
			return &keyvaluev1.SetResponse{}, nil
		})},
}

// RobustnessMutants returns the mutants a robustness run must catch.
func RobustnessMutants() []Mutant { return append([]Mutant(nil), robustnessMutants...) }
