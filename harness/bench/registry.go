package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/harness/backend"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	refproxy "github.com/prism-suite/prism/reference/proxy"
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

// registryOpenTimeout bounds opening every inbox of a multicast series, and
// registryArrivalTimeout the wait for the last receiver of one multicast:
// a series that cannot finish becomes an error line, never a stuck bench.
const (
	registryOpenTimeout    = 2 * time.Minute
	registryArrivalTimeout = 10 * time.Second
	// registryStreamsPerConn is how many Receive streams the bench opens on
	// one connection (the series' proxy allows registryMaxStreams).
	registryStreamsPerConn = 500
	registryMaxStreams     = 1024
)

// registrySlots is one slot setup the registry series runs on.
type registrySlots struct {
	label string
	slots map[string]hproxy.Slot
	close func(context.Context)
}

// registrySeries measures the proxy's multicast registry: Enumerate of
// 1 000 identities with a filter, and multicast to 100 and to 10 000
// identities — the time from the call until the last receiver has its
// message, and the share of targets that received it. It runs on memstore
// slots (the builtin driver when o.Builtin, else the plugin), then on redis
// + nats builtin slots when o.Redis and o.NATS are set.
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
	mem := hproxy.Slot{Plugin: o.Memstore}
	label := "memstore plugin slots"
	if o.Builtin {
		mem = hproxy.Slot{Builtin: "memstore"}
		label = "memstore builtin slots"
	}
	setups := []registrySlots{{label: label, slots: map[string]hproxy.Slot{"registry": mem, "messaging": mem}}}
	if o.Redis != "" && o.NATS != "" {
		rn, err := redisNATSSlots(ctx, o, logf)
		if err != nil {
			logf("registry series on redis + nats skipped: %v", err)
		} else {
			defer rn.close(context.Background())
			setups = append(setups, rn)
		}
	}
	var results []Result
	var goals []string
	var errs []error
	for _, s := range setups {
		rr, gg, err := registryOn(ctx, o, s, base, logf)
		results = append(results, rr...)
		goals = append(goals, gg...)
		if err != nil {
			goals = append(goals, fmt.Sprintf("P5 registry (%s): did not finish: %v", s.label, err))
			errs = append(errs, fmt.Errorf("%s: %w", s.label, err))
		}
	}
	return results, goals, errors.Join(errs...)
}

// redisNATSSlots starts a Redis and a NATS instance for builtin registry
// and messaging slots.
func redisNATSSlots(ctx context.Context, o Options, logf func(string, ...any)) (registrySlots, error) {
	var insts []backend.Instance
	closeAll := func(ctx context.Context) {
		for _, i := range insts {
			_ = i.Close(ctx)
		}
	}
	slots := map[string]hproxy.Slot{}
	for _, b := range []struct {
		slot     string
		kind     backend.Kind
		provider backend.Provider
	}{{"registry", backend.Redis, o.RedisProvider}, {"messaging", backend.NATS, o.NATSProvider}} {
		bo := backend.DefaultOptions()
		bo.Provider = b.provider
		bo.Logf = func(string, ...any) {}
		inst, err := backend.Start(ctx, b.kind, bo)
		if inst != nil {
			insts = append(insts, inst)
		}
		if err != nil {
			closeAll(ctx)
			return registrySlots{}, fmt.Errorf("start %s: %w", b.kind, err)
		}
		info := inst.Info()
		logf("registry: %s slot on %s %s %s at %s", b.slot, b.kind, info.Provider, info.ServerVersion, info.Address)
		values, creds := inst.PluginConfig()
		slots[b.slot] = hproxy.Slot{Builtin: string(b.kind), Config: values, Credentials: creds}
	}
	return registrySlots{label: "redis + nats builtin slots", slots: slots, close: closeAll}, nil
}

// registryOn runs the registry series on one slot setup, with a proxy of
// its own.
func registryOn(ctx context.Context, o Options, s registrySlots, base *Result, logf func(string, ...any)) ([]Result, []string, error) {
	po := proxyOptions(o)
	// 10 000 open Receive streams are 10 000 calls in flight, on
	// connections that each carry registryStreamsPerConn of them.
	lim := refproxy.DefaultLimits()
	lim.MaxConcurrentStreams = registryMaxStreams
	lim.MaxInFlight = 4 * registryLargeFanout
	po.Limits = &lim
	// A namespace per series, so each holds only its own identities (a
	// multicast resolves its filter over the whole namespace). They share
	// the slots; their key and topic prefixes differ.
	cfg := registry.Config{PresenceTTL: 30 * time.Second}
	nss := []string{"enumerate", "multicast-100", "multicast-10000"}
	var namespaces []hproxy.Namespace
	for _, n := range nss {
		namespaces = append(namespaces, hproxy.Namespace{Name: n, Patterns: []string{"registry"}, Slots: s.slots, Registry: &cfg})
	}
	px, err := startServing(ctx, po, namespaces...)
	if err != nil {
		return nil, nil, err
	}
	defer px.Stop(context.Background())
	// Enough connections that no Receive stream waits for a free HTTP/2
	// stream (a client waits for one without a deadline).
	var conns []*grpc.ClientConn
	for range registryLargeFanout/registryStreamsPerConn + 2 {
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

	logf("registry (%s): enumerate %d identities with a filter", s.label, registryEnumerateSize)
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
		enum := Load(ctx, fmt.Sprintf("registry Enumerate 1000 (filter, %s; %s)", what, s.label), 1, 2000, o.MaxSeries, func(ctx context.Context, _, _ int) error {
			resp, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: f, PageSize: registryEnumerateSize, IncludeMetadata: md})
			if err == nil && len(resp.GetIdentities()) != registryEnumerateSize {
				err = fmt.Errorf("enumerate returned %d identities, want %d", len(resp.GetIdentities()), registryEnumerateSize)
			}
			return err
		})
		goal := fmt.Sprintf("P5 registry Enumerate of %d identities with a filter, %s (%s): p50 %s, p99 %s%s (goal p99 ≤ 1ms: %s)",
			registryEnumerateSize, what, s.label, us(enum.P50), us(enum.P99), compared(&enum, base), met(enum.Errors == 0 && enum.P99 <= time.Millisecond))
		if enum.FirstError != "" {
			goal += fmt.Sprintf("; %d errors, first: %s", enum.Errors, enum.FirstError)
		}
		results = append(results, enum)
		goals = append(goals, goal)
	}

	for _, size := range []struct{ n, runs int }{{registrySmallFanout, registrySmallRuns}, {registryLargeFanout, registryLargeRuns}} {
		logf("registry (%s): multicast to %d receivers", s.label, size.n)
		r, m, err := multicastSeries(ctx, clientOf(fmt.Sprintf("multicast-%d", size.n)), size.n, size.runs, o.MaxSeries*5, registryOpenTimeout)
		if err != nil {
			return results, goals, fmt.Errorf("multicast to %d: %w", size.n, err)
		}
		r.Name += " (" + s.label + ")"
		goal := m.text + compared(&r, base)
		clean := m.received == m.targets && m.targets == int64(size.n*len(m.calls)) && m.dup == 0
		switch size.n {
		case registrySmallFanout:
			goal += fmt.Sprintf(" (goal p99 ≤ 5ms: %s)", met(clean && r.P99 <= 5*time.Millisecond))
		case registryLargeFanout:
			goal += fmt.Sprintf(" (goal ≤ 250ms, 100%% delivered, 0 duplicates: %s)", met(clean && r.P99 <= 250*time.Millisecond))
		}
		goals = append(goals, fmt.Sprintf("P5 %s [%s]", goal, s.label))
		results = append(results, r)
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
// the call and the last arrival. Inboxes not all open within openWithin are
// an error.
// firstError keeps the first error set (of any type, unlike atomic.Value).
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// multicastFigures are what multicastSeries saw, and its goal line's text.
type multicastFigures struct {
	text                   string
	calls                  []time.Duration
	received, targets, dup int64
}

func multicastSeries(ctx context.Context, client func(int) registryv1.RegistryClient, n, runs int, budget, openWithin time.Duration) (Result, multicastFigures, error) {
	group := fmt.Sprintf("mc%d", n)
	prefix := group + "-"
	if err := registerMany(ctx, client, prefix, n, func(int) map[string]*registryv1.Value {
		return map[string]*registryv1.Value{"group": str(group)}
	}); err != nil {
		return Result{}, multicastFigures{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		current *arrivals
		dup     atomic.Int64
	)
	var openErr firstError
	var opened atomic.Int64
	// Opening every inbox is bounded: a stream that cannot open (no free
	// HTTP/2 stream, a proxy that does not answer) ends the series with an
	// error instead of waiting for ever.
	openBy := time.NewTimer(openWithin)
	defer openBy.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-openBy.C:
			openErr.set(fmt.Errorf("opened %d of %d inboxes within %v", opened.Load(), n, openWithin))
			cancel()
		}
		if openErr.get() != nil {
			break
		}
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
				openErr.set(err)
				cancel()
				return
			}
			opened.Add(1)
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
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-openBy.C:
		openErr.set(fmt.Errorf("opened %d of %d inboxes within %v", opened.Load(), n, openWithin))
		cancel()
		<-waited
	}
	if err := openErr.get(); err != nil {
		return Result{}, multicastFigures{}, fmt.Errorf("open %d inboxes: %w", n, err)
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
			return Result{}, multicastFigures{}, fmt.Errorf("multicast to %d (run %d): %w", n, run, err)
		}
		select {
		case <-a.done:
		case <-time.After(registryArrivalTimeout):
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
	m := multicastFigures{calls: calls, received: received, targets: targets, dup: dup.Load()}
	m.text = fmt.Sprintf("registry Multicast to %d receivers over %d runs: last receiver after p50 %s, p99 %s (call p50 %s); received %.2f%% of %d targets, %d reported delivered, %d duplicates",
		n, len(calls), us(r.P50), us(r.P99), us(percentile(calls, 50)), share, targets, delivered, m.dup)
	return r, m, nil
}
