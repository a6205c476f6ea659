package memstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
)

// sink records what a subscription receives.
type sink struct {
	mu   sync.Mutex
	msgs []sdk.Message
}

func (s *sink) Deliver(m sdk.Message) { s.mu.Lock(); s.msgs = append(s.msgs, m); s.mu.Unlock() }
func (s *sink) Fail(error)            {}
func (s *sink) got() []sdk.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sdk.Message(nil), s.msgs...)
}

func TestPublishFansOutToLiteralTopicsAndQueueMembers(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	plain, star, prefix := &sink{}, &sink{}, &sink{}
	subs := []sdk.Subscription{}
	for topic, k := range map[string]*sink{"a.b": plain, "a.*": star, "a": prefix} {
		sub, err := s.Subscribe(ctx, topic, k)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	members := []*sink{{}, {}, {}}
	for _, m := range members {
		if _, err := s.SubscribeQueue(ctx, "a.b", "g", m); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	ids, err := s.PublishBatch(ctx, []sdk.Message{
		{Topic: "a.b", Payload: []byte("1"), Metadata: map[string]string{"k": "v"}},
		{Topic: "a.b", Payload: []byte("2")},
		{Topic: "a.b", Payload: []byte("3")},
	})
	if err != nil || len(ids) != 3 || ids[0] == ids[1] {
		t.Fatalf("PublishBatch = %v, %v; want three distinct ids", ids, err)
	}
	got := plain.got()
	if len(got) != 3 || got[0].ID != ids[0] || string(got[2].Payload) != "3" || got[0].Metadata["k"] != "v" || got[0].PublishTime.Before(before) {
		t.Fatalf("the subscriber of a.b got %+v", got)
	}
	if len(star.got()) != 0 || len(prefix.got()) != 0 {
		t.Fatalf("a.* got %d and a got %d messages of a.b; topics are literal", len(star.got()), len(prefix.got()))
	}
	for i, m := range members {
		if n := len(m.got()); n != 1 {
			t.Errorf("queue member %d got %d of 3 messages, want 1 (round robin)", i, n)
		}
	}
	for _, sub := range subs {
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Publish(ctx, sdk.Message{Topic: "a.b"}); err != nil {
		t.Fatal(err)
	}
	if n := len(plain.got()); n != 3 {
		t.Fatalf("the unsubscribed subscriber got %d messages, want still 3", n)
	}
	if h := s.Health(ctx); h.Details["subscriptions"] != "3" {
		t.Fatalf("Health subscriptions = %q, want the 3 queue members", h.Details["subscriptions"])
	}
}

func TestSlowConsumerPolicyFromConfig(t *testing.T) {
	s := memstore.New()
	err := s.Init(context.Background(), sdk.Config{Values: map[string]any{
		"buffer_messages": 10.0, "buffer_bytes": 4096.0, "block_timeout": "250ms", "max_payload_bytes": 2048.0,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	p := s.SlowConsumer()
	if p.Mode != sdk.BlockPublisher || p.BufferMessages != 10 || p.BufferBytes != 4096 || p.BlockTimeout != 250*time.Millisecond {
		t.Fatalf("SlowConsumer = %+v", p)
	}
	if s.Limits().MaxPayloadBytes != 2048 {
		t.Fatalf("Limits = %+v, want max payload 2048", s.Limits())
	}
	if err := memstore.New().Init(context.Background(), sdk.Config{Values: map[string]any{"block_timeout": 5.0}}); err == nil {
		t.Fatal("block_timeout of the wrong type was accepted")
	}
}
