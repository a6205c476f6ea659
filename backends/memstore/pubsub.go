package memstore

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/tracing"
)

// PubSub in memstore is an in-process bus: Publish hands the message to the
// SDK buffer of every subscription of the topic (and of one member per queue
// group, round robin) before it returns. Topics are map keys, so every
// character is literal. Delivery is ordered per publisher because Publish
// delivers synchronously. The slow-consumer policy is block-publisher: a
// publish waits up to BlockTimeout for room in a full buffer, then the slow
// subscription ends with ResourceExhausted. There is no durability.

var (
	_ sdk.PubSubBasic   = (*Store)(nil)
	_ sdk.PubSubOrdered = (*Store)(nil)
	_ sdk.PubSubQueue   = (*Store)(nil)
	_ sdk.PubSubPolicy  = (*Store)(nil)
)

// bus holds the subscriptions by topic.
type bus struct {
	mu     sync.RWMutex
	topics map[string]*topicSubs
	nextID atomic.Uint64
	epoch  string // makes ids unique across plugin processes
}

type topicSubs struct {
	plain  map[*msub]struct{}
	groups map[string]*queueGroup
}

type queueGroup struct {
	members []*msub
	next    atomic.Uint64
}

// msub is one subscription.
type msub struct {
	b     *bus
	topic string
	group string
	sink  sdk.Sink
	once  sync.Once
}

func newBus() *bus {
	return &bus{topics: map[string]*topicSubs{}, epoch: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

// bus returns the store's bus, creating it on first use.
func (s *Store) bus() *bus {
	s.busOnce.Do(func() { s.ps = newBus() })
	return s.ps
}

// SlowConsumer implements sdk.PubSubPolicy: block the publisher for up to
// the configured time, with buffers of the configured size.
func (s *Store) SlowConsumer() sdk.SlowConsumerPolicy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sdk.SlowConsumerPolicy{Mode: sdk.BlockPublisher, BufferMessages: s.opts.BufferMessages,
		BufferBytes: s.opts.BufferBytes, BlockTimeout: s.opts.BlockTimeout}
}

// OrderedPerPublisher implements sdk.PubSubOrdered.
func (s *Store) OrderedPerPublisher() {}

// Publish implements sdk.PubSubBasic.
func (s *Store) Publish(ctx context.Context, msg sdk.Message) (string, error) {
	_, sp := tracing.Child(ctx, "memstore.Publish")
	defer sp.End()
	b := s.bus()
	msg.ID = b.epoch + "-" + strconv.FormatUint(b.nextID.Add(1), 10)
	msg.PublishTime = time.Now()
	msg.Payload = clone(msg.Payload)
	for _, sub := range b.receivers(msg.Topic) {
		sub.sink.Deliver(msg)
	}
	return msg.ID, nil
}

// PublishBatch implements sdk.PubSubBasic.
func (s *Store) PublishBatch(ctx context.Context, msgs []sdk.Message) ([]string, error) {
	_, sp := tracing.Child(ctx, "memstore.PublishBatch")
	defer sp.End()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ids[i], _ = s.Publish(ctx, m)
	}
	return ids, nil
}

// receivers returns the subscriptions a message to topic goes to: every
// plain one and one member of each queue group.
func (b *bus) receivers(topic string) []*msub {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[topic]
	if t == nil {
		return nil
	}
	out := make([]*msub, 0, len(t.plain)+len(t.groups))
	for sub := range t.plain {
		out = append(out, sub)
	}
	for _, g := range t.groups {
		out = append(out, g.members[(g.next.Add(1)-1)%uint64(len(g.members))])
	}
	return out
}

// Subscribe implements sdk.PubSubBasic.
func (s *Store) Subscribe(ctx context.Context, topic string, sink sdk.Sink) (sdk.Subscription, error) {
	_, sp := tracing.Child(ctx, "memstore.Subscribe")
	defer sp.End()
	return s.bus().add(topic, "", sink), nil
}

// SubscribeQueue implements sdk.PubSubQueue.
func (s *Store) SubscribeQueue(ctx context.Context, topic, group string, sink sdk.Sink) (sdk.Subscription, error) {
	_, sp := tracing.Child(ctx, "memstore.SubscribeQueue")
	defer sp.End()
	return s.bus().add(topic, group, sink), nil
}

func (b *bus) add(topic, group string, sink sdk.Sink) *msub {
	sub := &msub{b: b, topic: topic, group: group, sink: sink}
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[topic]
	if t == nil {
		t = &topicSubs{plain: map[*msub]struct{}{}, groups: map[string]*queueGroup{}}
		b.topics[topic] = t
	}
	if group == "" {
		t.plain[sub] = struct{}{}
		return sub
	}
	g := t.groups[group]
	if g == nil {
		g = &queueGroup{}
		t.groups[group] = g
	}
	g.members = append(g.members, sub)
	return sub
}

// Unsubscribe implements sdk.Subscription. A Publish that took the
// subscription before it was removed may still deliver to it; the SDK drops
// deliveries after Unsubscribe.
func (m *msub) Unsubscribe() error {
	m.once.Do(func() {
		b := m.b
		b.mu.Lock()
		defer b.mu.Unlock()
		t := b.topics[m.topic]
		if t == nil {
			return
		}
		if m.group == "" {
			delete(t.plain, m)
		} else if g := t.groups[m.group]; g != nil {
			for i, x := range g.members {
				if x == m {
					g.members = append(g.members[:i:i], g.members[i+1:]...)
					break
				}
			}
			if len(g.members) == 0 {
				delete(t.groups, m.group)
			}
		}
		if len(t.plain) == 0 && len(t.groups) == 0 {
			delete(b.topics, m.topic)
		}
	})
	return nil
}

// subscriptions counts live subscriptions (for Health).
func (b *bus) subscriptions() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, t := range b.topics {
		n += len(t.plain)
		for _, g := range t.groups {
			n += len(g.members)
		}
	}
	return n
}
