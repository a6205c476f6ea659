// Package history records what concurrent clients did to a plugin while a
// nemesis ran (every operation with its invoke and return time and its
// outcome) and checks it: KeyValue histories for linearizability with
// porcupine (a register per key), durable PubSub histories for lost and
// after-ack deliveries.
package history

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// Outcome is what a client knows of an operation after it returned.
type Outcome string

// The outcomes of an operation.
const (
	// OK: the operation happened, with the result recorded.
	OK Outcome = "ok"
	// Failed: a definite error (InvalidArgument, NotFound of a Delete…):
	// the operation did not happen.
	Failed Outcome = "failed"
	// Unknown: a timeout, Unavailable or a lost connection: the operation
	// may or may not have happened.
	Unknown Outcome = "unknown"
)

// OutcomeOf classifies a call's error. A Get's NotFound is a result, not an
// error: the caller handles it before.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OK
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unknown
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated,
		codes.NotFound, codes.AlreadyExists, codes.OutOfRange, codes.Unimplemented, codes.ResourceExhausted:
		return Failed
	}
	// DeadlineExceeded, Unavailable, Canceled, Internal, Unknown, Aborted:
	// the request may have been applied before the answer was lost.
	return Unknown
}

// Op kinds of the KeyValue workload.
const (
	OpSet    = "set"
	OpGet    = "get"
	OpDelete = "delete"
)

// KVOp is one KeyValue operation as a client saw it.
type KVOp struct {
	Client int    `json:"client"`
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	// Value is what a Set wrote, or what an OK Get read.
	Value string `json:"value,omitempty"`
	// Found is an OK Get's or Delete's answer (the key existed).
	Found   bool    `json:"found,omitempty"`
	Outcome Outcome `json:"outcome"`
	// TimedOut marks an Unknown operation whose call hit its deadline (it
	// may still take effect later); other Unknown ones were answered with
	// an error (Unavailable…): they took effect before the answer or never.
	TimedOut bool   `json:"timed_out,omitempty"`
	Err      string `json:"error,omitempty"`
	// Invoke and Return are monotonic times since the history's start.
	Invoke time.Duration `json:"invoke_ns"`
	Return time.Duration `json:"return_ns"`
}

// KVOptions shape the KeyValue workload.
type KVOptions struct {
	// Clients is the number of concurrent clients (default 8).
	Clients int
	// Keys is the size of the key set (default 4); keys are Prefix + "k<i>".
	Keys   int
	Prefix string
	// CallTimeout is each call's deadline (default 1s); past it the
	// operation is Unknown.
	CallTimeout time.Duration
	// Rate caps each client's operations per second (default 200; <0: no
	// cap), which keeps histories small enough to check.
	Rate float64
	// Backoff is a client's pause after an unknown outcome (default 100ms).
	Backoff time.Duration
	// Seed picks the operations (0: random).
	Seed uint64
}

func (o *KVOptions) defaults() {
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Keys <= 0 {
		o.Keys = 4
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = time.Second
	}
	if o.Rate == 0 {
		o.Rate = 200
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
}

// KeyNames are the keys of a workload with o's options.
func (o KVOptions) KeyNames() []string {
	o.defaults()
	keys := make([]string, o.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sk%d", o.Prefix, i)
	}
	return keys
}

// KVHistory is a recorded KeyValue history.
type KVHistory struct {
	Start time.Time
	Ops   []KVOp
}

// At converts a time of the run into the history's clock.
func (h *KVHistory) At(t time.Time) time.Duration { return t.Sub(h.Start) }

// RunKV drives kv with o.Clients concurrent clients (Set 50%, Get 35%,
// Delete 15% on a small key set, unique values "c<client>-<seq>") until
// ctx ends, and returns every operation. A client that got an Unknown
// outcome goes on under a new client id, as porcupine wants (its unknown
// operation never returns).
func RunKV(ctx context.Context, kv keyvaluev1.KeyValueClient, o KVOptions) *KVHistory {
	o.defaults()
	h := &KVHistory{Start: time.Now()}
	keys := o.KeyNames()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = o.Clients
	)
	newID := func() int {
		mu.Lock()
		defer mu.Unlock()
		next++
		return next - 1
	}
	for c := 0; c < o.Clients; c++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(o.Seed, uint64(id)))
			var tick *time.Ticker
			if o.Rate > 0 {
				tick = time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
				defer tick.Stop()
			}
			var local []KVOp
			defer func() { mu.Lock(); h.Ops = append(h.Ops, local...); mu.Unlock() }()
			for seq := 0; ; seq++ {
				if tick != nil {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				} else if ctx.Err() != nil {
					return
				}
				op := KVOp{Client: id, Key: keys[rnd.IntN(len(keys))]}
				switch p := rnd.IntN(100); {
				case p < 50:
					op.Kind, op.Value = OpSet, fmt.Sprintf("c%d-%d", id, seq)
				case p < 85:
					op.Kind = OpGet
				default:
					op.Kind = OpDelete
				}
				// The call's own context: the run's end must not turn a
				// call in flight into a cancelled (unknown) one.
				cctx, cancel := context.WithTimeout(context.Background(), o.CallTimeout)
				op.Invoke = time.Since(h.Start)
				var err error
				switch op.Kind {
				case OpSet:
					_, err = kv.Set(cctx, &keyvaluev1.SetRequest{Key: op.Key, Value: []byte(op.Value)})
				case OpGet:
					var r *keyvaluev1.GetResponse
					r, err = kv.Get(cctx, &keyvaluev1.GetRequest{Key: op.Key})
					if err == nil {
						op.Found, op.Value = true, string(r.GetValue())
					} else if status.Code(err) == codes.NotFound {
						err = nil
					}
				case OpDelete:
					var r *keyvaluev1.DeleteResponse
					r, err = kv.Delete(cctx, &keyvaluev1.DeleteRequest{Key: op.Key})
					op.Found = r.GetExisted()
				}
				op.Return = time.Since(h.Start)
				cancel()
				op.Outcome = OutcomeOf(err)
				op.TimedOut = op.Outcome == Unknown && (errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded || cctx.Err() != nil)
				if err != nil {
					op.Err = err.Error()
				}
				local = append(local, op)
				if op.Outcome == Unknown {
					id = newID()
					// A client backs off after a lost answer, as a
					// retrying client would; it also keeps the number of
					// unknown operations, which the check pays for, small.
					select {
					case <-ctx.Done():
						return
					case <-time.After(o.Backoff):
					}
				}
			}
		}(c)
	}
	wg.Wait()
	return h
}

// Count counts the operations by outcome.
func (h *KVHistory) Count() map[Outcome]int {
	n := map[Outcome]int{}
	for _, op := range h.Ops {
		n[op.Outcome]++
	}
	return n
}

// FirstOKAfter is how long after t the first operation invoked after t
// returned OK (the service's recovery after a heal at t); false if none did.
func (h *KVHistory) FirstOKAfter(t time.Time) (time.Duration, bool) {
	at := h.At(t)
	best, found := time.Duration(0), false
	for _, op := range h.Ops {
		if op.Outcome == OK && op.Invoke >= at && (!found || op.Return < best) {
			best, found = op.Return, true
		}
	}
	return best - at, found
}

// infinity is the return time of an operation whose outcome is unknown:
// it may take effect at any point after its invoke (porcupine's and etcd's
// robustness tests' way).
const infinity = math.MaxInt64
