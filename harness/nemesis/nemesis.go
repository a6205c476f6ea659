// Package nemesis injects faults into a cluster of backend nodes while a
// robustness run records a history (Jepsen's nemeses), always heals what it
// injected, and says exactly what it did and when.
//
// A cluster instance (harness/backend) implements [Cluster]; [Run] drives a
// schedule of faults over it; the robustness runner (acceptance) puts the
// [Event]s next to the history it checks.
package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

const (
	// Kill stops a node hard (SIGKILL / docker kill) and starts it again.
	Kill Kind = "kill"
	// Pause freezes a node (SIGSTOP / docker pause) and resumes it.
	Pause Kind = "pause"
	// Partition disconnects a node from the cluster's network and reconnects it.
	Partition Kind = "partition"
	// KillLeader kills the node that currently serves writes for
	// [Options.LeaderKey] (redis: the primary of the key's slot; nats: the
	// leader of the stream) and starts it again.
	KillLeader Kind = "kill-leader"
)

// Kinds are all kinds, in the order [ParseKinds] documents them.
var Kinds = []Kind{Kill, Pause, Partition, KillLeader}

// ParseKinds parses a comma-separated list of kinds ("kill,pause").
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k := Kind(f)
		if !slices.Contains(Kinds, k) {
			return nil, fmt.Errorf("unknown nemesis %q (known: kill, pause, partition, kill-leader)", f)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("no nemesis named")
	}
	return out, nil
}

// Node is one node of a cluster.
type Node struct {
	// ID names the node in events and reports (e.g. "redis-2").
	ID string
	// Addr is where the node's clients reach it (host:port).
	Addr string
	// Role is what the node is at the time of the call ("primary",
	// "replica", "leader", … ; "" if the cluster has no roles).
	Role string
}

// Cluster is what a nemesis acts on. Every method is bounded by ctx.
type Cluster interface {
	// Nodes lists the nodes.
	Nodes(ctx context.Context) ([]Node, error)
	// Supports says whether a kind can be injected into this cluster, and
	// if not, why (e.g. a process cluster cannot be partitioned).
	Supports(k Kind) (ok bool, why string)
	// Kill stops a node hard; Restart starts it again with its data dir.
	Kill(ctx context.Context, id string) error
	Restart(ctx context.Context, id string) error
	// Pause freezes a node; Resume lets it run again.
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Disconnect cuts a node off from the cluster's network (and its
	// clients); Reconnect joins it again.
	Disconnect(ctx context.Context, id string) error
	Reconnect(ctx context.Context, id string) error
	// Leader returns the node that serves writes for key now (redis: the
	// primary of the key's slot; nats: the leader of the stream named key).
	Leader(ctx context.Context, key string) (string, error)
	// WaitHealthy polls until every node is up and the cluster serves again
	// (all slots covered by a reachable primary; the stream has a leader and
	// its replicas are current), or ctx ends.
	WaitHealthy(ctx context.Context) error
}

// Event is one injected fault, with when it was injected, healed and when
// the cluster was healthy again.
type Event struct {
	Kind      Kind      `json:"kind"`
	Node      string    `json:"node"`
	Injected  time.Time `json:"injected"`
	Healed    time.Time `json:"healed,omitzero"`
	Recovered time.Time `json:"recovered,omitzero"`
	// Err is what went wrong injecting, healing or waiting ("" if nothing).
	Err string `json:"error,omitempty"`
}

// RecoverTime is how long the cluster took to be healthy after the heal.
func (e Event) RecoverTime() time.Duration {
	if e.Recovered.IsZero() || e.Healed.IsZero() {
		return 0
	}
	return e.Recovered.Sub(e.Healed)
}

// Options are a schedule of faults.
type Options struct {
	// Kinds are injected in turn (round robin, from a random start).
	Kinds []Kind
	// Hold is how long each fault stays before it is healed (default 3s).
	Hold time.Duration
	// Gap is the quiet time after the cluster is healthy again before the
	// next fault (default 1s).
	Gap time.Duration
	// Recover bounds the wait for health after each heal (default 60s);
	// past it the run stops with an error.
	Recover time.Duration
	// LeaderKey is the key (or stream) whose leader KillLeader kills.
	LeaderKey string
	// Seed picks the nodes (0: a random seed).
	Seed uint64
}

func (o *Options) defaults() {
	if o.Hold <= 0 {
		o.Hold = 3 * time.Second
	}
	if o.Gap <= 0 {
		o.Gap = time.Second
	}
	if o.Recover <= 0 {
		o.Recover = 60 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
}

// Run injects faults into c until ctx ends: each held for Hold, healed,
// then waited on until c is healthy, then Gap. It heals what it injected
// before it returns, even when ctx has ended (with a fresh bounded
// context), and reports each event to onEvent (may be nil) as it happens.
// A kind c does not support is an error before anything is injected.
func Run(ctx context.Context, c Cluster, o Options, onEvent func(Event)) ([]Event, error) {
	o.defaults()
	if len(o.Kinds) == 0 {
		return nil, errors.New("nemesis: no kinds")
	}
	for _, k := range o.Kinds {
		if ok, why := c.Supports(k); !ok {
			return nil, fmt.Errorf("nemesis %s: not supported by this cluster: %s", k, why)
		}
		if k == KillLeader && o.LeaderKey == "" {
			return nil, errors.New("nemesis kill-leader: no leader key")
		}
	}
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	var events []Event
	emit := func(e Event) {
		events = append(events, e)
		if onEvent != nil {
			onEvent(e)
		}
	}
	for i := rnd.IntN(len(o.Kinds)); ; i++ {
		if ctx.Err() != nil {
			return events, nil
		}
		k := o.Kinds[i%len(o.Kinds)]
		id, err := pick(ctx, c, k, o.LeaderKey, rnd)
		if err != nil {
			if ctx.Err() != nil {
				return events, nil
			}
			return events, fmt.Errorf("nemesis %s: pick a node: %w", k, err)
		}
		// An injection the run's end would cut short could leave a node
		// half-stopped: it gets a bounded context of its own. A failed one
		// is healed all the same (it may have half happened).
		ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), o.Recover)
		f, _ := Inject(ictx, c, k, id)
		icancel()
		select {
		case <-ctx.Done():
		case <-time.After(o.Hold):
		}
		// Heal with a context of its own: the run's may have ended.
		hctx, cancel := context.WithTimeout(context.Background(), o.Recover)
		e, err := f.Heal(hctx)
		cancel()
		emit(e)
		if err != nil {
			return events, err
		}
		select {
		case <-ctx.Done():
			return events, nil
		case <-time.After(o.Gap):
		}
	}
}

// Fault is one fault injected by [Inject], until its Heal.
type Fault struct {
	c     Cluster
	heal  func(context.Context, string) error
	event Event
	done  bool
}

// Inject injects one fault of kind k into node id of c (KillLeader kills
// id: the caller found the leader) and returns it, to be healed with Heal.
// A failed injection is an error and still returns the Fault: it may have
// half happened, and Heal undoes what did.
func Inject(ctx context.Context, c Cluster, k Kind, id string) (*Fault, error) {
	inject, heal := actions(c, k)
	f := &Fault{c: c, heal: heal, event: Event{Kind: k, Node: id, Injected: time.Now()}}
	if err := inject(ctx, id); err != nil {
		f.event.Err = "inject: " + err.Error()
		return f, fmt.Errorf("nemesis %s on %s: %s", k, id, f.event.Err)
	}
	return f, nil
}

// Event is the fault's event so far.
func (f *Fault) Event() Event { return f.event }

// Heal heals the fault, waits until the cluster is healthy (within ctx)
// and returns the whole event: when it was injected, healed and healthy
// again. The error (also in Event.Err) says what went wrong injecting,
// healing or waiting. Only the first call acts; a later one (a cleanup
// after the spec healed) returns the same.
func (f *Fault) Heal(ctx context.Context) (Event, error) {
	if !f.done {
		f.done = true
		if err := f.heal(ctx, f.event.Node); err != nil {
			f.event.Err = joinErr(f.event.Err, "heal: "+err.Error())
		}
		f.event.Healed = time.Now()
		if err := f.c.WaitHealthy(ctx); err != nil {
			f.event.Err = joinErr(f.event.Err, "recover: "+err.Error())
		} else {
			f.event.Recovered = time.Now()
		}
	}
	if f.event.Err != "" {
		return f.event, fmt.Errorf("nemesis %s on %s: %s", f.event.Kind, f.event.Node, f.event.Err)
	}
	return f.event, nil
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func pick(ctx context.Context, c Cluster, k Kind, leaderKey string, rnd *rand.Rand) (string, error) {
	if k == KillLeader {
		return c.Leader(ctx, leaderKey)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return "", err
	}
	if len(nodes) == 0 {
		return "", errors.New("the cluster has no nodes")
	}
	return nodes[rnd.IntN(len(nodes))].ID, nil
}

func actions(c Cluster, k Kind) (inject, heal func(context.Context, string) error) {
	switch k {
	case Pause:
		return c.Pause, c.Resume
	case Partition:
		return c.Disconnect, c.Reconnect
	default: // Kill, KillLeader
		return c.Kill, c.Restart
	}
}
