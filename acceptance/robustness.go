package acceptance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/history"
	"github.com/prism-suite/prism/harness/nemesis"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// RobustnessOptions shape a robustness run (prism-accept --robustness).
type RobustnessOptions struct {
	// Nemesis are the faults injected in turn; empty: none (the workload
	// runs without faults).
	Nemesis []nemesis.Kind
	// Duration is how long the workload and the nemesis run.
	Duration time.Duration
	// Clients and Keys shape the KeyValue workload.
	Clients, Keys int
	// Hold is how long each fault stays (default 3s); Gap the quiet time
	// after recovery (default 1s).
	Hold, Gap time.Duration
	// CheckTimeout bounds porcupine's check of one key (default 20s).
	CheckTimeout time.Duration
}

// clusterOf is the one place a robustness run gets the nemesis.Cluster of
// its backend instance: a cluster instance is one; any other instance is a
// cluster of one node.
func clusterOf(inst backend.Instance) nemesis.Cluster {
	if c, ok := inst.(nemesis.Cluster); ok {
		return c
	}
	return singleNode{inst}
}

// singleNode is a backend instance as a cluster of one node: kill is the
// instance's Down and Up (backend.Outager), pause its Pause and Unpause
// (backend.Pauser); a single node has no peers to be partitioned from.
type singleNode struct{ inst backend.Instance }

func (s singleNode) id() string { return string(s.inst.Info().Kind) + "-0" }

func (s singleNode) Nodes(context.Context) ([]nemesis.Node, error) {
	return []nemesis.Node{{ID: s.id(), Addr: s.inst.Info().Address, Role: "primary"}}, nil
}

func (s singleNode) Supports(k nemesis.Kind) (bool, string) {
	info := s.inst.Info()
	if info.Provider == backend.None {
		return false, fmt.Sprintf("%s has no backend node (its state is in the plugin process)", info.Kind)
	}
	switch k {
	case nemesis.Kill, nemesis.KillLeader:
		if _, ok := s.inst.(backend.Outager); !ok {
			return false, fmt.Sprintf("a %s instance of %s cannot be taken down", info.Provider, info.Kind)
		}
	case nemesis.Pause:
		if _, ok := s.inst.(backend.Pauser); !ok {
			return false, fmt.Sprintf("a %s instance of %s cannot be paused (container or process can)", info.Provider, info.Kind)
		}
	case nemesis.Partition:
		return false, "a single node has no peers to be partitioned from (use a cluster instance)"
	}
	return true, ""
}

func (s singleNode) check(id string) error {
	if id != s.id() {
		return fmt.Errorf("no node %q (the only one is %s)", id, s.id())
	}
	return nil
}

// act runs one fault action on the node. nemesis.Run gives each action a
// bounded context of its own, so the run's end never cuts a container stop
// or start short.
func (s singleNode) act(ctx context.Context, id string, f func(context.Context) error) error {
	if err := s.check(id); err != nil {
		return err
	}
	return f(ctx)
}

func (s singleNode) Kill(ctx context.Context, id string) error {
	return s.act(ctx, id, s.inst.(backend.Outager).Down)
}

func (s singleNode) Restart(ctx context.Context, id string) error {
	return s.act(ctx, id, s.inst.(backend.Outager).Up)
}

func (s singleNode) Pause(ctx context.Context, id string) error {
	return s.act(ctx, id, s.inst.(backend.Pauser).Pause)
}

func (s singleNode) Resume(ctx context.Context, id string) error {
	return s.act(ctx, id, s.inst.(backend.Pauser).Unpause)
}

func (s singleNode) Disconnect(context.Context, string) error {
	return errors.New("a single node cannot be partitioned")
}

func (s singleNode) Reconnect(context.Context, string) error {
	return errors.New("a single node cannot be partitioned")
}

func (s singleNode) Leader(context.Context, string) (string, error) { return s.id(), nil }

// WaitHealthy polls until the node accepts connections again.
func (s singleNode) WaitHealthy(ctx context.Context) error {
	addr := s.inst.Info().Address
	if addr == "" {
		return nil
	}
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting connections: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Robustness runs a robustness run: it starts the backend, the plugin (and
// the proxy with --via proxy), drives the KeyValue workload (when the plugin
// declares keyvalue.basic) and the durable PubSub workload (pubsub.durable)
// while the nemesis injects faults, heals, waits until the backend is
// healthy, checks the histories and writes report.json (and the
// visualization of every key whose history is not linearizable) into
// cfg.ReportDir. It returns the exit code.
func Robustness(cfg Config, o RobustnessOptions) int {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 20 * time.Second
	}
	log := cfg.Logf
	start := time.Now()
	r := &Session{cfg: cfg.clone(), setupDone: make(chan struct{})}
	r.stop, r.cancelStop = context.WithCancel(context.Background())
	defer r.cancelStop()
	// The first SIGINT or SIGTERM stops the run (the workload, the nemesis,
	// which heals) and writes the report; a second exits at once.
	stopSignals := r.handleSignals(os.Stderr)
	defer stopSignals()
	r.setup()
	defer r.teardown()

	rep, declared := r.reportHead(start, r.cfg.Command)
	rob := &report.Robustness{DurationMS: o.Duration.Milliseconds(), Clients: o.Clients, Keys: o.Keys, Events: []report.RobustEvent{}}
	for _, k := range o.Nemesis {
		rob.Nemesis = append(rob.Nemesis, string(k))
	}
	rep.Robustness = rob
	run := report.RobustnessRun{Described: r.desc != nil, Declared: declared, Setup: r.setupFailure(), Result: rob}
	if run.Setup == nil && r.cfg.viaProxy() && r.proxyErr != nil {
		run.Setup = &report.SetupFailure{Outcome: report.Error, Message: "harness: " + r.proxyErr.Error()}
	}
	if run.Setup == nil {
		tg := r.fx.Target
		if r.cfg.Via == target.Proxy {
			tg = r.pfx.Target
		}
		r.robustRun(tg, clusterOf(r.inst), run.Declared, o, rob)
	}
	rep.Capabilities, rep.ExitCode, rep.ExitReason = report.JudgeRobustness(run)
	if sig := r.Interrupted(); sig != nil {
		rep.ExitCode, rep.ExitReason = ExitInterrupted(sig), fmt.Sprintf("interrupted by %s: the run stopped early; its checks are not a verdict", sigName(sig))
	}
	rep.DurationMS = time.Since(start).Milliseconds()
	r.redact(rep)
	printRobustness(log, rep)
	if r.cfg.ReportDir != "" {
		rep.Command += " --report-dir=" + r.cfg.ReportDir
		err := os.MkdirAll(r.cfg.ReportDir, 0o755)
		if err == nil {
			_, err = rep.WriteJSON(r.cfg.ReportDir)
		}
		if err != nil {
			log("prism-accept: %v", unwritten(rep, err))
			return rep.ExitCode
		}
		log("reports: %s/report.json", r.cfg.ReportDir)
	}
	return rep.ExitCode
}

// robustRun runs the workloads and the nemesis together for o.Duration,
// heals, waits healthy and checks, filling rob.
func (r *Session) robustRun(tg target.Target, c nemesis.Cluster, declared capability.Set, o RobustnessOptions, rob *report.Robustness) {
	log := r.cfg.Logf
	kvOn, psOn := declared.Has(capability.KeyValueBasic), declared.Has(capability.PubSubDurable)
	for _, k := range o.Nemesis {
		if ok, why := c.Supports(k); !ok {
			rob.Errors = append(rob.Errors, fmt.Sprintf("nemesis %s cannot be injected into this %s instance: %s", k, r.inst.Info().Kind, why))
			return
		}
	}
	psTopic := fmt.Sprintf("robust.%d", r.cfg.Seed)
	kvo := history.KVOptions{Clients: o.Clients, Keys: o.Keys, Prefix: fmt.Sprintf("robust-%d-", r.cfg.Seed), CallTimeout: r.cfg.Timeouts.Call,
		Seed: uint64(r.cfg.Seed)} // the same operations again with --seed (timing aside)
	if kvOn {
		// The keys start absent: the register model's initial state.
		if err := clearKeys(r.stop, tg.KeyValue(), kvo.KeyNames(), r.cfg.Timeouts.Call); err != nil {
			rob.Errors = append(rob.Errors, "clear the workload's keys before the run: "+err.Error())
			return
		}
	}
	// kill-leader hits the node that serves the first key's writes; with no
	// KeyValue workload, the leader of the durable topic's stream.
	leaderKey := psTopic
	if kvOn {
		leaderKey = kvo.KeyNames()[0]
	}
	ctx, cancel := context.WithTimeout(r.stop, o.Duration)
	defer cancel()
	var (
		wg     sync.WaitGroup
		events []nemesis.Event
		nemErr error
		h      *history.KVHistory
		ps     *history.PubSubResult
		psErr  error
		healed = make(chan struct{})
	)
	log("robustness: %s for %v, nemesis %v, keyvalue %v, durable pubsub %v", tg.Via, o.Duration, o.Nemesis, kvOn, psOn)
	// The durable consumer must exist before the first fault.
	psLive := make(chan struct{})
	if !psOn {
		close(psLive)
	}
	nemDone := make(chan struct{})
	if len(o.Nemesis) == 0 {
		close(nemDone)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(nemDone)
			select {
			case <-psLive:
			case <-ctx.Done():
				return
			}
			events, nemErr = nemesis.Run(ctx, c, nemesis.Options{Kinds: o.Nemesis, Hold: o.Hold, Gap: o.Gap, LeaderKey: leaderKey, Seed: uint64(r.cfg.Seed)},
				func(e nemesis.Event) {
					log("nemesis: %s %s injected, healed after %v, healthy %v later %s", e.Kind, e.Node, e.Healed.Sub(e.Injected).Round(time.Millisecond), e.RecoverTime().Round(time.Millisecond), e.Err)
				})
			if nemErr != nil {
				cancel() // no use going on: the run is not what was asked
			}
		}()
	}
	if kvOn {
		wg.Add(1)
		go func() { defer wg.Done(); h = history.RunKV(ctx, tg.KeyValue(), kvo) }()
	}
	if psOn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps, psErr = history.RunDurablePubSub(ctx, tg.PubSub(), history.PubSubOptions{
				Topic: psTopic, Durable: fmt.Sprintf("robust-%d", r.cfg.Seed), CallTimeout: r.cfg.Timeouts.Call,
				Live: func(err error) {
					if err != nil {
						cancel()
					}
					close(psLive)
				},
			}, healed)
		}()
	}
	// The nemesis heals before it returns; then the backend must be healthy.
	waitDone := make(chan struct{})
	go func() {
		<-ctx.Done()
		<-nemDone
		wctx, wcancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Eventually*2)
		defer wcancel()
		if err := c.WaitHealthy(wctx); err != nil && r.inst.Info().Provider != backend.None {
			rob.Errors = append(rob.Errors, "the backend was not healthy after the run: "+err.Error())
		}
		close(healed)
		close(waitDone)
	}()
	wg.Wait()
	<-waitDone
	if nemErr != nil {
		rob.Errors = append(rob.Errors, nemErr.Error())
	}
	for _, e := range events {
		re := report.RobustEvent{Event: e, RecoverMS: float64(e.RecoverTime().Microseconds()) / 1000, ServiceRecoverMS: -1}
		if ps != nil {
			if d, ok := ps.FirstOKAfter(e.Healed); ok {
				re.PublishRecoverMS = float64(d.Microseconds()) / 1000
			} else {
				re.PublishRecoverMS = -1
			}
			if w := e.Healed.Sub(e.Injected); w > 0 {
				re.PublishesPerSec = float64(ps.PublishedIn(e.Injected, e.Healed)) / w.Seconds()
			}
		}
		if h != nil {
			re.OpsPerSec = opsPerSec(h, [][2]time.Time{{e.Injected, e.Healed}})
			re.ServiceRecoverMS = -1
			if d, ok := h.FirstOKAfter(e.Healed); ok {
				re.ServiceRecoverMS = float64(d.Microseconds()) / 1000
			}
		}
		rob.Events = append(rob.Events, re)
	}
	if psErr != nil {
		rob.Errors = append(rob.Errors, "durable pubsub: "+psErr.Error())
	}
	if ps != nil {
		rob.PubSub = ps
		rob.Facts = append(rob.Facts, prefixed("pubsub: ", ps.Facts())...)
	}
	if h == nil || r.Interrupted() != nil { // interrupted: no verdict, no check
		return
	}
	final, err := finalState(context.Background(), tg.KeyValue(), kvo.KeyNames(), r.cfg.Timeouts.Call, r.cfg.Timeouts.Eventually)
	if err != nil {
		rob.Errors = append(rob.Errors, err.Error())
	}
	res, err := history.CheckKV(h, kvo.KeyNames(), final, r.cfg.ReportDir, o.CheckTimeout)
	if err != nil {
		rob.Errors = append(rob.Errors, "check: "+err.Error())
	}
	kv := &report.RobustKV{Ops: len(h.Ops), ByOutcome: h.Count(), KVResult: res}
	if len(h.Ops) > 0 {
		kv.OpsPerSec = float64(len(h.Ops)) / o.Duration.Seconds()
	}
	var windows [][2]time.Time
	for _, e := range events {
		windows = append(windows, [2]time.Time{e.Injected, e.Healed})
	}
	kv.DuringFaultsOpsPerSec = opsPerSec(h, windows)
	rob.KeyValue = kv
	rob.Facts = append(rob.Facts, prefixed("keyvalue: ", res.Facts())...)
}

func prefixed(p string, ss []string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, p+s)
	}
	return out
}

// opsPerSec is the throughput of the operations invoked inside windows.
func opsPerSec(h *history.KVHistory, windows [][2]time.Time) float64 {
	var n int
	var total time.Duration
	for _, w := range windows {
		if w[1].IsZero() {
			continue
		}
		from, to := h.At(w[0]), h.At(w[1])
		total += to - from
		for _, op := range h.Ops {
			if op.Invoke >= from && op.Invoke <= to {
				n++
			}
		}
	}
	if total <= 0 {
		return 0
	}
	return float64(n) / total.Seconds()
}

// clearKeys deletes keys, retrying each until a definite answer.
func clearKeys(ctx context.Context, kv keyvaluev1.KeyValueClient, keys []string, call time.Duration) error {
	for _, k := range keys {
		cctx, cancel := context.WithTimeout(ctx, call)
		_, err := kv.Delete(cctx, &keyvaluev1.DeleteRequest{Key: k})
		cancel()
		if err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}

// finalState reads every key after the run, polling each until a definite
// answer (the plugin may still be reconnecting) or eventually passes.
func finalState(ctx context.Context, kv keyvaluev1.KeyValueClient, keys []string, call, eventually time.Duration) (map[string]*string, error) {
	out := map[string]*string{}
	deadline := time.Now().Add(eventually)
	for _, k := range keys {
		for {
			cctx, cancel := context.WithTimeout(ctx, call)
			resp, err := kv.Get(cctx, &keyvaluev1.GetRequest{Key: k})
			cancel()
			if err == nil {
				v := string(resp.GetValue())
				out[k] = &v
				break
			}
			if status.Code(err) == codes.NotFound {
				out[k] = nil
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("read %s after the run: no answer within %v: %w", k, eventually, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return out, nil
}

func printRobustness(log func(string, ...any), rep *report.Report) {
	rob := rep.Robustness
	log("")
	log("Robustness of %s %s (backend %s via %s, nemesis %s):", rep.Plugin.Name, rep.Plugin.Version, rep.Backend.Kind, rep.Via, strings.Join(rob.Nemesis, ","))
	if kv := rob.KeyValue; kv != nil {
		log("  keyvalue: %d ops (%v), %.0f ops/s, %.0f ops/s during faults", kv.Ops, kv.ByOutcome, kv.OpsPerSec, kv.DuringFaultsOpsPerSec)
		for _, k := range kv.Keys {
			extra := ""
			if k.Visualization != "" {
				extra = " — see " + k.Visualization
			}
			log("    %-28s %-18s %5d ops, %d stale reads, %d acknowledged writes lost%s", k.Key, k.Verdict, k.Ops, k.StaleReads, k.LostWrites, extra)
		}
	}
	if ps := rob.PubSub; ps != nil {
		log("  pubsub: %d acked to publishers, %d delivered, %d redelivered, %d lost, %d after ack", ps.Acked, ps.Delivered, ps.Redelivered, ps.Lost, ps.AfterAck)
	}
	for _, e := range rob.Events {
		line := fmt.Sprintf("  event: %s %s held %v: backend healthy %.0f ms after the heal", e.Kind, e.Node, e.Healed.Sub(e.Injected).Round(time.Millisecond), e.RecoverMS)
		if rob.KeyValue != nil {
			line += fmt.Sprintf("; keyvalue: %.0f ops/s while in, first OK call %.0f ms after the heal", e.OpsPerSec, e.ServiceRecoverMS)
		}
		if rob.PubSub != nil {
			line += fmt.Sprintf("; pubsub: %.0f publishes/s while in, first OK publish %.0f ms after the heal", e.PublishesPerSec, e.PublishRecoverMS)
		}
		log("%s (-1: none) %s", line, e.Err)
	}
	for _, f := range rob.Facts {
		log("  fact: %s", f)
	}
	for _, e := range rob.Errors {
		log("  harness error: %s", e)
	}
	for _, c := range rep.Capabilities {
		log("  %-24s %-13s %s", c.Name, c.Verdict, c.Reason)
	}
	if rep.ExitCode != report.ExitOK {
		log("\nexit %d: %s", rep.ExitCode, rep.ExitReason)
	}
}
