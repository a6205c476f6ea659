package redis_test

import (
	"sync"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
)

// recorder is a Sink that keeps what it receives.
type recorder struct {
	mu   sync.Mutex
	msgs []sdk.Message
	err  error
}

func (r *recorder) Deliver(m sdk.Message) { r.mu.Lock(); r.msgs = append(r.msgs, m); r.mu.Unlock() }
func (r *recorder) Fail(err error)        { r.mu.Lock(); r.err = err; r.mu.Unlock() }
func (r *recorder) got() []sdk.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.Message(nil), r.msgs...)
}

// waitFor polls r until it holds n messages, for at most 5s.
func waitFor(t *testing.T, r *recorder, n int) []sdk.Message {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.got()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages after 5s, want %d", len(r.got()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.got()
}

func TestPubSubSharesOneConnectionAndKeepsTopicsLiteral(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), map[string]any{"key_prefix": "ns1:"}, nil)
	ctx := testCtx(t, 10*time.Second)
	a1, a2, glob, other := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	s1, err := d.Subscribe(ctx, "a", a1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := d.Subscribe(ctx, "a", a2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Subscribe(ctx, "a*", glob); err != nil {
		t.Fatal(err)
	}
	// Another namespace on the same server sees nothing of ns1.
	d2 := newDriver(t, m.Addr(), map[string]any{"key_prefix": "ns2:"}, nil)
	if _, err := d2.Subscribe(ctx, "a", other); err != nil {
		t.Fatal(err)
	}

	ids, err := d.PublishBatch(ctx, []sdk.Message{
		{Topic: "a", Payload: []byte{0, 255}, Metadata: map[string]string{"k": "v"}},
		{Topic: "ab", Payload: []byte("not for a*")},
		{Topic: "a", Payload: []byte{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{a1, a2} {
		got := waitFor(t, r, 2)
		if got[0].ID != ids[0] || got[1].ID != ids[2] || got[0].Metadata["k"] != "v" || got[0].Topic != "a" ||
			string(got[0].Payload) != "\x00\xff" || got[1].Payload == nil || got[0].PublishTime.IsZero() {
			t.Fatalf("subscriber of a got %+v", got)
		}
	}
	if err := s1.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	id, err := d.Publish(ctx, sdk.Message{Topic: "a", Payload: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, a2, 3); got[2].ID != id {
		t.Fatalf("the remaining subscriber of a got %+v", got[2])
	}
	if len(a1.got()) != 2 || len(glob.got()) != 0 || len(other.got()) != 0 {
		t.Fatalf("unsubscribed got %d (want 2), a* got %d, ns2 got %d (want 0)", len(a1.got()), len(glob.got()), len(other.got()))
	}
	if err := s2.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	// Subscribing again after the last one left works.
	again := &recorder{}
	if _, err := d.Subscribe(ctx, "a", again); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Publish(ctx, sdk.Message{Topic: "a", Payload: []byte("again")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, again, 1)
}

func TestPubSubEndsSubscriptionsOnClose(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	r := &recorder{}
	if _, err := d.Subscribe(testCtx(t, 5*time.Second), "t", r); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		err := r.err
		r.mu.Unlock()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscription did not fail within 5s of Close")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
