package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry"
)

// Registry series sizes.
const (
	registryEnumerateSize = 1000
	registrySmallFanout   = 100
	registryLargeFanout   = 10_000
	registrySmallRuns     = 100
	registryLargeRuns     = 3
)

// registrySeries measures the proxy's multicast registry on memstore slots:
// Enumerate of 1 000 identities with a filter, and multicast to 100 and to
// 10 000 identities — the time from the call until the last receiver has
// its message, and the share of targets that received it.
//
// Each is compared with base (a proxied memstore Get at concurrency 1 in the
// same run, when there is one), so a loaded machine shows in both.
func registrySeries(ctx context.Context, o Options, base *Result, logf func(string, ...any)) ([]Result, []string, error) {
	if o.Proxy == "" {
		return nil, nil, nil
	}
	if _, err := os.Stat(o.Proxy); err != nil {
		return nil, nil, fmt.Errorf("start proxy: %w", err)
	}
	po := hproxy.DefaultOptions()
	po.Binary = o.Proxy
	po.LogLevel = "warn"
	po.HealthInterval = 5 * time.Second
	// A namespace per series, so each holds only its own identities (a
	// multicast resolves its filter over the whole namespace). They share
	// one memstore process; their key prefixes differ.
	cfg := registry.Config{PresenceTTL: 30 * time.Second}
	nss := []string{"enumerate", "multicast-100", "multicast-10000"}
	var namespaces []hproxy.Namespace
	for _, n := range nss {
		namespaces = append(namespaces, hproxy.Namespace{Name: n, Patterns: []string{"registry"}, Plugin: o.Memstore, Registry: &cfg})
	}
	px, err := hproxy.Start(ctx, po, namespaces...)
	if err != nil {
		_ = px.Stop(ctx)
		return nil, nil, err
	}
	defer px.Stop(context.Background())
	for _, n := range nss {
		if err := px.WaitServing(ctx, n); err != nil {
			return nil, nil, err
		}
	}
	// Several connections, so 10 000 streams do not share one.
	var conns []*grpc.ClientConn
	for range 4 {
		c, err := target.Dial(px.Addr)
		if err != nil {
			return nil, nil, err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	clientOf := func(ns string) func(int) registryv1.RegistryClient {
		return func(i int) registryv1.RegistryClient {
			return target.Target{Via: target.Proxy, Namespace: ns, Conn: conns[i%len(conns)]}.Registry()
		}
	}
	client := clientOf("enumerate")
	rc := client(0)
	var results []Result
	var goals []string

	logf("registry: enumerate %d identities with a filter", registryEnumerateSize)
	if err := registerMany(ctx, client, "enum-", registryEnumerateSize, func(i int) map[string]*registryv1.Value {
		return map[string]*registryv1.Value{"group": str("enum"), "floor": num(int64(i % 10))}
	}); err != nil {
		return nil, nil, err
	}
	f := &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{Filters: []*registryv1.Filter{
		{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: "group", Op: registryv1.Condition_OP_EQ, Value: str("enum")}}},
		{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: "floor", Op: registryv1.Condition_OP_GTE, Value: num(0)}}},
	}}}}
	for _, md := range []bool{false, true} {
		what := "identities"
		if md {
			what = "with metadata"
		}
		enum := Load(ctx, fmt.Sprintf("registry Enumerate 1000 (filter, %s)", what), 1, 2000, o.MaxSeries, func(ctx context.Context, _, _ int) error {
			resp, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: f, PageSize: registryEnumerateSize, IncludeMetadata: md})
			if err == nil && len(resp.GetIdentities()) != registryEnumerateSize {
				err = fmt.Errorf("enumerate returned %d identities, want %d", len(resp.GetIdentities()), registryEnumerateSize)
			}
			return err
		})
		goals = append(goals, fmt.Sprintf("registry Enumerate of %d identities with a filter, %s (memstore slot): p50 %s, p99 %s%s (goal ≤ 1ms)",
			registryEnumerateSize, what, us(enum.P50), us(enum.P99), compared(&enum, base)))
		results = append(results, enum)
	}

	for _, size := range []struct{ n, runs int }{{registrySmallFanout, registrySmallRuns}, {registryLargeFanout, registryLargeRuns}} {
		logf("registry: multicast to %d receivers", size.n)
		r, goal, err := multicastSeries(ctx, clientOf(fmt.Sprintf("multicast-%d", size.n)), size.n, size.runs, o.MaxSeries*5)
		if err != nil {
			return results, goals, err
		}
		goal += compared(&r, base)
		switch size.n {
		case registrySmallFanout:
			goal += " (goal ≤ 5ms p99)"
		case registryLargeFanout:
			goal += " (goal ≤ 250ms, 100% delivered)"
		}
		results = append(results, r)
		goals = append(goals, goal)
	}
	return results, goals, nil
}

// baselineOf returns the result with that name and concurrency, or nil.
func baselineOf(rs []Result, name string, conc int) *Result {
	for i := range rs {
		if rs[i].Name == name && rs[i].Concurrency == conc {
			return &rs[i]
		}
	}
	return nil
}

// compared fills r's ratios against base and says how its p50 compares.
func compared(r *Result, base *Result) string {
	if base == nil || base.P50 <= 0 {
		return ""
	}
	r.Compare(*base)
	return fmt.Sprintf("; p50 = %.1f × %s p50 %s in this run", r.P50Ratio, base.Name, us(base.P50))
}

func str(s string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: s}}
}
func num(i int64) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: i}}
}

// registerMany registers n identities prefix<i> with 64 calls in flight.
func registerMany(ctx context.Context, client func(int) registryv1.RegistryClient, prefix string, n int, md func(int) map[string]*registryv1.Value) error {
	var first atomic.Value
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := client(i).Register(cctx, &registryv1.RegisterRequest{Identity: fmt.Sprintf("%s%05d", prefix, i), Metadata: md(i),
				Ttl: durationpb.New(10 * time.Minute), Replace: true})
			if err != nil {
				first.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return fmt.Errorf("register %s*: %w", prefix, err)
	}
	return nil
}

// arrivals counts the receivers that got one multicast and when the last did.
type arrivals struct {
	count atomic.Int64
	mu    sync.Mutex
	last  time.Time
	done  chan struct{}
	want  int64
}

// multicastSeries registers n identities with open inboxes and multicasts to
// them runs times (each after the previous one arrived everywhere), timing
// the call and the last arrival.
func multicastSeries(ctx context.Context, client func(int) registryv1.RegistryClient, n, runs int, budget time.Duration) (Result, string, error) {
	group := fmt.Sprintf("mc%d", n)
	prefix := group + "-"
	if err := registerMany(ctx, client, prefix, n, func(int) map[string]*registryv1.Value {
		return map[string]*registryv1.Value{"group": str(group)}
	}); err != nil {
		return Result{}, "", err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		current *arrivals
		dup     atomic.Int64
	)
	openErr := atomic.Value{}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s, err := client(i).Receive(rctx)
			if err == nil {
				err = s.Send(&registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Open_{Open: &registryv1.ReceiveRequest_Open{
					Identity: fmt.Sprintf("%s%05d", prefix, i)}}})
			}
			if err == nil {
				_, err = s.Recv() // Subscribed
			}
			if err != nil {
				openErr.CompareAndSwap(nil, err)
				return
			}
			go func() {
				seen := map[string]bool{}
				for {
					ev, err := s.Recv()
					if err != nil {
						return
					}
					m := ev.GetMessage()
					if m == nil {
						continue
					}
					if seen[string(m.GetPayload())] {
						dup.Add(1)
						continue
					}
					seen[string(m.GetPayload())] = true
					now := time.Now()
					mu.Lock()
					a := current
					mu.Unlock()
					if a == nil {
						continue
					}
					a.mu.Lock()
					if now.After(a.last) {
						a.last = now
					}
					a.mu.Unlock()
					if a.count.Add(1) == a.want {
						close(a.done)
					}
				}
			}()
		}()
	}
	wg.Wait()
	if err, ok := openErr.Load().(error); ok {
		return Result{}, "", fmt.Errorf("open %d inboxes: %w", n, err)
	}
	f := &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: "group", Op: registryv1.Condition_OP_EQ, Value: str(group)}}}
	var lastArrival, calls []time.Duration
	var received, targets, delivered int64
	start := time.Now()
	for run := range runs {
		if time.Since(start) > budget {
			break
		}
		a := &arrivals{done: make(chan struct{}), want: int64(n)}
		mu.Lock()
		current = a
		mu.Unlock()
		payload := fmt.Sprintf("run-%d", run)
		t0 := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := client(run).Multicast(cctx, &registryv1.MulticastRequest{Filter: f, Payload: []byte(payload)})
		ccancel()
		call := time.Since(t0)
		if err != nil {
			return Result{}, "", fmt.Errorf("multicast to %d: %w", n, err)
		}
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
		}
		a.mu.Lock()
		last := a.last
		a.mu.Unlock()
		calls = append(calls, call)
		if !last.IsZero() {
			lastArrival = append(lastArrival, last.Sub(t0))
		}
		received += a.count.Load()
		targets += resp.GetTargetCount()
		delivered += resp.GetDeliveredCount()
	}
	slices.Sort(lastArrival)
	r := Result{Name: fmt.Sprintf("registry Multicast to %d (until the last receiver has it)", n), Concurrency: 1,
		Ops: int64(len(calls)), Elapsed: time.Since(start), P50: sortedPercentile(lastArrival, 50), P99: sortedPercentile(lastArrival, 99)}
	if r.Elapsed > 0 {
		r.OpsPerSec = float64(len(calls)) / r.Elapsed.Seconds()
	}
	share := 0.0
	if targets > 0 {
		share = 100 * float64(received) / float64(targets)
	}
	goal := fmt.Sprintf("registry Multicast to %d receivers over %d runs: last receiver after p50 %s, p99 %s (call p50 %s); received %.2f%% of %d targets, %d reported delivered, %d duplicates",
		n, len(calls), us(r.P50), us(r.P99), us(percentile(calls, 50)), share, targets, delivered, dup.Load())
	return r, goal, nil
}
