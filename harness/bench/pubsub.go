package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// Sizes and rates of the PubSub series.
const (
	// PayloadSize is the payload of the PubSub series.
	PayloadSize = 128
	// BatchSize is the messages per batched publish.
	BatchSize = 100
	// LatencyRate is the publish rate of the latency series, msg/s (the
	// issue's goal: p99 ≤ 5 ms at 10 000 msg/s through the proxy).
	LatencyRate = 10_000
	// pubConcurrency and batchConcurrency are the publishers of the
	// throughput series.
	pubConcurrency   = 64
	batchConcurrency = 8
)

// pubSubTarget is what a PubSub series drives: publish one, publish a batch,
// and subscribe with a callback that gets each payload.
type pubSubTarget struct {
	name      string
	publish   func(ctx context.Context, payload []byte) error
	batch     func(ctx context.Context, payloads [][]byte) error
	subscribe func(ctx context.Context, got func(payload []byte)) (stop func(), err error)
}

// pubSubSeries measures every target: single publish, batched publish and
// publish→delivery latency at LatencyRate, each plugin compared with the
// direct client of its backend measured right before it; with a proxy, the
// nats plugin through it too (process and builtin), against the goal lines
// of P4, which it returns.
func pubSubSeries(ctx context.Context, o Options, memstore *plugin.Process, rs *redisSetup, logf func(string, ...any)) ([]Result, []string) {
	var out []Result
	var goals []string
	measure := func(t pubSubTarget, base []Result) []Result {
		logf("pubsub: %s", t.name)
		// One subscriber takes what the throughput series publish.
		stopDrain, err := t.subscribe(ctx, func([]byte) {})
		if err != nil {
			logf("pubsub: %s: subscribe: %v", t.name, err)
			return nil
		}
		rs := []Result{
			Load(ctx, t.name+" Publish", pubConcurrency, o.Ops, o.MaxSeries, func(ctx context.Context, _, i int) error {
				return t.publish(ctx, make([]byte, PayloadSize))
			}),
			batched(Load(ctx, t.name+" PublishBatch×100 (msgs)", batchConcurrency, max(o.Ops/BatchSize, 1), o.MaxSeries, func(ctx context.Context, _, _ int) error {
				b := make([][]byte, BatchSize)
				for i := range b {
					b[i] = make([]byte, PayloadSize)
				}
				return t.batch(ctx, b)
			})),
		}
		stopDrain()
		rs = append(rs, latency(ctx, t, min(o.Ops, int(LatencyRate*o.MaxSeries.Seconds())), o.MaxSeries))
		for i := range base {
			if i < len(rs) {
				rs[i].Compare(base[i])
			}
		}
		return rs
	}

	out = append(out, measure(grpcTarget("memstore plugin", pubsubv1.NewPubSubClient(memstore.Conn)), nil)...)

	if ns, err := startNATS(ctx, o, logf); err != nil {
		logf("nats series skipped: %v", err)
	} else if ns != nil {
		defer ns.close(ctx)
		core := measure(ns.direct(false), nil)
		js := measure(ns.direct(true), nil)
		// The plugin publishes through JetStream (acknowledged) and delivers
		// from core subscriptions: compare publishes with js, latency with core.
		out = append(out, core...)
		out = append(out, js...)
		var base []Result
		if len(js) == 3 && len(core) == 3 {
			base = []Result{js[0], js[1], core[2]}
		}
		plug := measure(grpcTarget("nats plugin", pubsubv1.NewPubSubClient(ns.plugin.Conn)), base)
		out = append(out, plug...)
		if rs, g := natsViaProxy(ctx, o, ns, plug, measure, logf); len(rs) > 0 || len(g) > 0 {
			out, goals = append(out, rs...), append(goals, g...)
		}
	}

	if rs != nil {
		direct := measure(redisDirect(rs.rdb), nil)
		out = append(out, direct...)
		out = append(out, measure(grpcTarget("redis plugin", pubsubv1.NewPubSubClient(rs.plugin.Conn)), direct)...)
	}
	return out, goals
}

// Goals of P4: batched publishes through the proxy (nats), and the time
// from publish to delivery at LatencyRate through it.
const (
	goalBatchedMsgPerSec = 100_000
	goalDeliveryP99      = 5 * time.Millisecond
)

// natsViaProxy measures the nats plugin through prism-proxy, as a process
// plugin and (with o.Builtin) as the proxy's builtin driver, each compared
// with the plugin direct (plug: Publish, PublishBatch, latency), and returns
// the P4 goal lines.
func natsViaProxy(ctx context.Context, o Options, ns *natsSetup, plug []Result, measure func(pubSubTarget, []Result) []Result, logf func(string, ...any)) ([]Result, []string) {
	if o.Proxy == "" {
		return nil, []string{"P4 PubSub via proxy: not measured (no proxy binary)"}
	}
	values, creds := ns.inst.PluginConfig()
	nss := []hproxy.Namespace{{Name: "nats", Patterns: []string{"pubsub"}, Plugin: o.NATS, Config: values, Credentials: creds}}
	if o.Builtin {
		nss = append(nss, hproxy.Namespace{Name: "nats-builtin", Patterns: []string{"pubsub"}, Builtin: "nats", Config: values, Credentials: creds})
	}
	px, err := startServing(ctx, proxyOptions(o), nss...)
	if err != nil {
		logf("pubsub via proxy: %v", err)
		return nil, []string{fmt.Sprintf("P4 PubSub via proxy: not measured (the proxy did not start: %v)", err)}
	}
	defer px.Stop(context.Background())
	var out []Result
	var goals []string
	for _, n := range nss {
		name := "nats via proxy (process plugin)"
		if n.Builtin != "" {
			name = "nats via proxy (builtin)"
		}
		rs := measure(grpcTarget(name, px.Target(n.Name).PubSub()), plug)
		out = append(out, rs...)
		if len(rs) != 3 {
			goals = append(goals, fmt.Sprintf("P4 %s: not measured (it did not subscribe)", name))
			continue
		}
		batch, lat := rs[1], rs[2]
		direct := ""
		if len(plug) == 3 {
			direct = fmt.Sprintf("; the plugin direct: %.0f msg/s, p99 %s", plug[1].OpsPerSec, us(plug[2].P99))
		}
		goals = append(goals, fmt.Sprintf("P4 %s: PublishBatch×%d %.0f msg/s (goal ≥ %d: %s); publish→delivery @%d/s p99 %s (goal ≤ %s: %s)%s%s",
			name, BatchSize, batch.OpsPerSec, goalBatchedMsgPerSec,
			met(batch.FirstError == "" && batch.OpsPerSec >= goalBatchedMsgPerSec), LatencyRate, us(lat.P99), goalDeliveryP99,
			met(lat.FirstError == "" && lat.P99 > 0 && lat.P99 <= goalDeliveryP99), direct, firstErrors(batch, lat)))
	}
	return out, goals
}

// firstErrors names the first error of each result that has one.
func firstErrors(rs ...Result) string {
	var s string
	for _, r := range rs {
		if r.FirstError != "" {
			s += fmt.Sprintf("; %s: %s", r.Name, r.FirstError)
		}
	}
	return s
}

// batched turns a series of batch calls into one of messages.
func batched(r Result) Result {
	r.Ops *= BatchSize
	r.OpsPerSec *= BatchSize
	return r
}

// latency publishes n stamped messages at LatencyRate from 16 publishers and
// measures, at one subscriber, the time from stamping to delivery.
func latency(ctx context.Context, t pubSubTarget, n int, d time.Duration) Result {
	name := fmt.Sprintf("%s publish→delivery @%d/s", t.name, LatencyRate)
	var (
		mu   sync.Mutex
		lats = make([]time.Duration, 0, n)
		all  = make(chan struct{})
		once sync.Once
	)
	stop, err := t.subscribe(ctx, func(p []byte) {
		if len(p) < 8 {
			return
		}
		l := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(p))))
		mu.Lock()
		lats = append(lats, l)
		if len(lats) == n {
			once.Do(func() { close(all) })
		}
		mu.Unlock()
	})
	if err != nil {
		return Result{Name: name, FirstError: err.Error()}
	}
	defer stop()

	// Enough publishers that one slow call does not hold the rate back.
	const publishers = 16
	var errs atomic.Int64
	var first atomic.Value
	interval := time.Second * publishers / LatencyRate
	start := time.Now()
	var wg sync.WaitGroup
	for w := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += publishers {
				// Pacing, not a readiness wait: message i leaves at its slot.
				if wait := time.Until(start.Add(time.Duration(i) * interval / publishers)); wait > 0 {
					time.Sleep(wait)
				}
				p := make([]byte, PayloadSize)
				binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
				if err := t.publish(ctx, p); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(d):
	}
	elapsed := time.Since(start)
	mu.Lock()
	got := slices.Clone(lats)
	mu.Unlock()
	slices.Sort(got)
	r := Result{Name: name, Concurrency: publishers, Ops: int64(len(got)), Errors: errs.Load() + int64(n-len(got)), Elapsed: elapsed}
	if len(got) > 0 {
		r.P50, r.P99 = sortedPercentile(got, 50), sortedPercentile(got, 99)
		r.OpsPerSec = float64(len(got)) / elapsed.Seconds()
	}
	if f, ok := first.Load().(string); ok {
		r.FirstError = f
	} else if n > len(got) {
		r.FirstError = fmt.Sprintf("%d of %d messages not delivered within %v", n-len(got), n, d)
	}
	return r
}

// grpcTarget drives a PubSub plugin over gRPC; every series has its own topic.
func grpcTarget(name string, ps pubsubv1.PubSubClient) pubSubTarget {
	var seq atomic.Int64
	topic := fmt.Sprintf("bench:%d", time.Now().UnixNano())
	cur := func() string { return fmt.Sprintf("%s:%d", topic, seq.Load()) }
	return pubSubTarget{
		name: name,
		publish: func(ctx context.Context, p []byte) error {
			_, err := ps.Publish(ctx, &pubsubv1.PublishRequest{Topic: cur(), Payload: p})
			return err
		},
		batch: func(ctx context.Context, payloads [][]byte) error {
			req := &pubsubv1.PublishBatchRequest{Messages: make([]*pubsubv1.OutgoingMessage, len(payloads))}
			for i, p := range payloads {
				req.Messages[i] = &pubsubv1.OutgoingMessage{Topic: cur(), Payload: p}
			}
			_, err := ps.PublishBatch(ctx, req)
			return err
		},
		subscribe: func(ctx context.Context, got func([]byte)) (func(), error) {
			seq.Add(1) // a fresh topic: nothing of earlier series arrives
			sctx, cancel := context.WithCancel(ctx)
			stream, err := ps.Subscribe(sctx)
			if err != nil {
				cancel()
				return nil, err
			}
			err = stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: &pubsubv1.Subscription{Topic: cur()}}})
			if err == nil {
				var ev *pubsubv1.SubscribeEvent
				if ev, err = stream.Recv(); err == nil && ev.GetSubscribed() == nil {
					err = fmt.Errorf("first event %v, want Subscribed", ev)
				}
			}
			if err != nil {
				cancel()
				return nil, fmt.Errorf("subscribe: %w", err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					ev, err := stream.Recv()
					if err != nil {
						return
					}
					if m := ev.GetMessage(); m != nil {
						got(m.GetPayload())
					}
				}
			}()
			return func() { cancel(); <-done }, nil
		},
	}
}

// natsSetup is the nats side of a run: the server, a nats.go connection on
// it and a nats plugin process talking to it.
type natsSetup struct {
	inst   backend.Instance
	nc     *gonats.Conn
	js     jetstream.JetStream
	plugin *plugin.Process
}

// startNATS starts a NATS instance (provider o.NATSProvider) and the nats
// plugin against it. It returns nil, nil when o.NATS is not built.
func startNATS(ctx context.Context, o Options, logf func(string, ...any)) (*natsSetup, error) {
	if o.NATS == "" {
		return nil, nil
	}
	if _, err := os.Stat(o.NATS); err != nil {
		logf("nats plugin %s not found: skipping the nats series", o.NATS)
		return nil, nil
	}
	bo := backend.DefaultOptions()
	bo.Provider = o.NATSProvider
	bo.Logf = func(string, ...any) {}
	inst, err := backend.Start(ctx, backend.NATS, bo)
	if err != nil {
		if inst != nil {
			_ = inst.Close(ctx)
		}
		return nil, fmt.Errorf("start nats: %w", err)
	}
	info := inst.Info()
	logf("nats: %s %s at %s", info.Provider, info.ServerVersion, info.Address)
	n := &natsSetup{inst: inst}
	values, creds := inst.PluginConfig()
	n.plugin, err = plugin.Launch(ctx, o.NATS, plugin.DefaultOptions())
	if err != nil {
		n.close(ctx)
		return nil, fmt.Errorf("launch %s: %w", o.NATS, err)
	}
	cfg, err := structpb.NewStruct(values)
	if err != nil {
		n.close(ctx)
		return nil, fmt.Errorf("encode nats config: %w", err)
	}
	if _, err := n.plugin.Setup(ctx, &lifecyclev1.InitializeRequest{Config: cfg, Credentials: creds}); err != nil {
		n.close(ctx)
		return nil, fmt.Errorf("set up nats plugin: %w", err)
	}
	// The plugin made the stream: direct JetStream publishes to its subjects
	// are acknowledged like the plugin's.
	var nopts []gonats.Option
	if creds["token"] != "" {
		nopts = append(nopts, gonats.Token(creds["token"]))
	} else if creds["user"] != "" {
		nopts = append(nopts, gonats.UserInfo(creds["user"], creds["password"]))
	}
	if n.nc, err = gonats.Connect(values["url"].(string), nopts...); err != nil {
		n.close(ctx)
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		n.close(ctx)
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return n, nil
}

func (n *natsSetup) close(ctx context.Context) {
	if n.plugin != nil {
		_ = n.plugin.Stop(ctx)
	}
	if n.nc != nil {
		n.nc.Close()
	}
	_ = n.inst.Close(ctx)
}

// direct drives nats.go straight to the server: core publishes (fire and
// forget; a batch is flushed) or, with js, JetStream publishes acknowledged
// by the server (a batch asynchronously, awaited together); subscriptions
// are core.
func (n *natsSetup) direct(js bool) pubSubTarget {
	var seq atomic.Int64
	subject := func() string { return fmt.Sprintf("prism.t.benchdirect%d", seq.Load()) }
	t := pubSubTarget{name: "nats.go core direct"}
	if js {
		t.name = "nats.go JetStream direct"
	}
	t.publish = func(ctx context.Context, p []byte) error {
		if js {
			_, err := n.js.Publish(ctx, subject(), p)
			return err
		}
		return n.nc.Publish(subject(), p)
	}
	t.batch = func(ctx context.Context, payloads [][]byte) error {
		if !js {
			for _, p := range payloads {
				if err := n.nc.Publish(subject(), p); err != nil {
					return err
				}
			}
			return n.nc.FlushTimeout(5 * time.Second)
		}
		fs := make([]jetstream.PubAckFuture, len(payloads))
		for i, p := range payloads {
			f, err := n.js.PublishAsync(subject(), p)
			if err != nil {
				return err
			}
			fs[i] = f
		}
		for _, f := range fs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	t.subscribe = func(ctx context.Context, got func([]byte)) (func(), error) {
		seq.Add(1)
		sub, err := n.nc.Subscribe(subject(), func(m *gonats.Msg) { got(m.Data) })
		if err != nil {
			return nil, err
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return nil, err
		}
		if err := n.nc.FlushTimeout(5 * time.Second); err != nil {
			return nil, err
		}
		return func() { _ = sub.Unsubscribe() }, nil
	}
	return t
}

// redisDirect drives go-redis straight to the server: PUBLISH, a pipeline of
// PUBLISHes, and SUBSCRIBE.
func redisDirect(rdb *redis.Client) pubSubTarget {
	var seq atomic.Int64
	channel := func() string { return fmt.Sprintf("bench:direct:%d", seq.Load()) }
	return pubSubTarget{
		name: "redis go-redis direct",
		publish: func(ctx context.Context, p []byte) error {
			return rdb.Publish(ctx, channel(), p).Err()
		},
		batch: func(ctx context.Context, payloads [][]byte) error {
			_, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
				for _, p := range payloads {
					pl.Publish(ctx, channel(), p)
				}
				return nil
			})
			return err
		},
		subscribe: func(ctx context.Context, got func([]byte)) (func(), error) {
			seq.Add(1)
			ps := rdb.Subscribe(ctx, channel())
			if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
				_ = ps.Close()
				return nil, err
			}
			ch := ps.Channel(redis.WithChannelSize(LatencyRate))
			done := make(chan struct{})
			go func() {
				defer close(done)
				for m := range ch {
					got([]byte(m.Payload))
				}
			}()
			return func() { _ = ps.Close(); <-done }, nil
		},
	}
}
