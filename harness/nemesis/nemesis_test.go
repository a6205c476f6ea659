package nemesis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prism-suite/prism/harness/nemesis"
)

// recorder is a Cluster that records what is done to it; it tests the
// schedule, not a backend.
type recorder struct {
	mu        sync.Mutex
	calls     []string
	down      map[string]bool
	noSupport nemesis.Kind
	failHeal  bool
	slowKill  time.Duration
}

func (r *recorder) log(s string) { r.mu.Lock(); r.calls = append(r.calls, s); r.mu.Unlock() }

func (r *recorder) Nodes(context.Context) ([]nemesis.Node, error) {
	return []nemesis.Node{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}, nil
}
func (r *recorder) Supports(k nemesis.Kind) (bool, string) {
	if k == r.noSupport {
		return false, "not here"
	}
	return true, ""
}
func (r *recorder) set(op, id string, down bool) error {
	r.log(op + " " + id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down == nil {
		r.down = map[string]bool{}
	}
	r.down[id] = down
	return nil
}
func (r *recorder) Kill(ctx context.Context, id string) error {
	if r.slowKill > 0 {
		time.Sleep(r.slowKill) // a container stop taking its time
		if ctx.Err() != nil {
			return fmt.Errorf("kill %s cut short: %w", id, ctx.Err())
		}
	}
	return r.set("kill", id, true)
}
func (r *recorder) Restart(_ context.Context, id string) error { return r.heal("restart", id) }
func (r *recorder) Pause(_ context.Context, id string) error   { return r.set("pause", id, true) }
func (r *recorder) Resume(_ context.Context, id string) error  { return r.heal("resume", id) }
func (r *recorder) Disconnect(_ context.Context, id string) error {
	return r.set("disconnect", id, true)
}
func (r *recorder) Reconnect(_ context.Context, id string) error { return r.heal("reconnect", id) }
func (r *recorder) heal(op, id string) error {
	if r.failHeal {
		r.log(op + " " + id + " failed")
		return errors.New("heal failed")
	}
	return r.set(op, id, false)
}
func (r *recorder) Leader(context.Context, string) (string, error) { return "n2", nil }
func (r *recorder) WaitHealthy(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, d := range r.down {
		if d {
			return fmt.Errorf("%s down", id)
		}
	}
	return nil
}

func TestRunHealsEveryFaultEvenWhenTheRunEndsDuringOne(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	events, err := nemesis.Run(ctx, r, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Kill, nemesis.Pause, nemesis.Partition, nemesis.KillLeader},
		LeaderKey: "k", Hold: 40 * time.Millisecond, Gap: time.Millisecond, Seed: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 2 {
		t.Fatalf("%d events in 250ms of 50ms faults, want several: %v", len(events), r.calls)
	}
	if err := r.WaitHealthy(context.Background()); err != nil {
		t.Fatalf("after Run: %v (calls %v)", err, r.calls)
	}
	for i, e := range events {
		// The last fault is cut short by the run's end, and healed at once.
		held := i == len(events)-1 || e.Healed.Sub(e.Injected) >= 40*time.Millisecond
		if e.Err != "" || e.Healed.Before(e.Injected) || e.Recovered.Before(e.Healed) || !held {
			t.Errorf("event %+v: want injected ≤ healed (held 40ms) ≤ recovered, no error", e)
		}
		if e.Kind == nemesis.KillLeader && e.Node != "n2" {
			t.Errorf("kill-leader hit %s, want the leader n2", e.Node)
		}
	}
}

func TestRunRefusesAKindTheClusterCannotDoBeforeInjectingAnything(t *testing.T) {
	r := &recorder{noSupport: nemesis.Partition}
	_, err := nemesis.Run(context.Background(), r, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Kill, nemesis.Partition}}, nil)
	if err == nil || !strings.Contains(err.Error(), "not here") || len(r.calls) != 0 {
		t.Fatalf("err %v, calls %v: want the reason and no call", err, r.calls)
	}
}

func TestRunStopsWithTheErrorOfAFailedHeal(t *testing.T) {
	r := &recorder{failHeal: true}
	var seen []nemesis.Event
	events, err := nemesis.Run(context.Background(), r, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Kill},
		Hold: time.Millisecond, Recover: 100 * time.Millisecond}, func(e nemesis.Event) { seen = append(seen, e) })
	if err == nil || len(events) != 1 || len(seen) != 1 || !strings.Contains(events[0].Err, "heal failed") {
		t.Fatalf("err %v events %+v: want one event with the heal's error, and the run's error", err, events)
	}
}

func TestParseKinds(t *testing.T) {
	ks, err := nemesis.ParseKinds("kill, pause,partition,kill-leader")
	if err != nil || len(ks) != 4 {
		t.Fatalf("%v %v", ks, err)
	}
	for _, bad := range []string{"", "kill,nuke", ","} {
		if _, err := nemesis.ParseKinds(bad); err == nil {
			t.Errorf("ParseKinds(%q): no error", bad)
		}
	}
}

func TestRunFinishesAnInjectionTheRunsEndInterrupts(t *testing.T) {
	r := &recorder{slowKill: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	events, err := nemesis.Run(ctx, r, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Kill}, Hold: time.Millisecond}, nil)
	if err != nil || len(events) != 1 || events[0].Err != "" {
		t.Fatalf("err %v, events %+v: want the kill done and healed although the run ended during it", err, events)
	}
	if err := r.WaitHealthy(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Inject and Heal are one step of Run, for a spec that injects a fault,
// works under it and heals it: each kind injects and heals with its own
// pair of actions, the event is complete after the heal, and a second Heal
// (a cleanup after the spec healed) acts no more.
func TestInjectHeal(t *testing.T) {
	for k, want := range map[nemesis.Kind][2]string{
		nemesis.Kill: {"kill n1", "restart n1"}, nemesis.KillLeader: {"kill n1", "restart n1"},
		nemesis.Pause: {"pause n1", "resume n1"}, nemesis.Partition: {"disconnect n1", "reconnect n1"},
	} {
		r := &recorder{}
		f, err := nemesis.Inject(t.Context(), r, k, "n1")
		if err != nil || r.WaitHealthy(t.Context()) == nil {
			t.Fatalf("%s: inject: %v; want n1 down", k, err)
		}
		e, err := f.Heal(t.Context())
		if err != nil || e.Kind != k || e.Node != "n1" || e.Injected.IsZero() || e.Healed.Before(e.Injected) || e.Recovered.Before(e.Healed) {
			t.Fatalf("%s: heal: %+v, %v; want a whole event", k, e, err)
		}
		if _, err := f.Heal(t.Context()); err != nil || !slices.Equal(r.calls, want[:]) {
			t.Fatalf("%s: calls %v after a second Heal (%v), want %v", k, r.calls, err, want)
		}
	}
}

// A heal that fails is Heal's error and the event's, and the cluster's
// health is still waited on (it is not: never Recovered).
func TestHealFails(t *testing.T) {
	r := &recorder{failHeal: true}
	f, err := nemesis.Inject(t.Context(), r, nemesis.Pause, "n3")
	if err != nil {
		t.Fatal(err)
	}
	e, err := f.Heal(t.Context())
	if err == nil || !strings.Contains(e.Err, "heal: heal failed") || !strings.Contains(e.Err, "recover: n3 down") || !e.Recovered.IsZero() {
		t.Fatalf("heal: %+v, %v; want the heal's and the recovery's errors and no recovery", e, err)
	}
}
