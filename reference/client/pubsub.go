package client

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// PubSub is the PubSub API of a client's namespace. No PubSub call is
// retried: a repeated Publish would be a duplicate message.
type PubSub struct {
	c  *Client
	ps pubsubv1.PubSubClient
}

// PubSub returns the PubSub API.
func (c *Client) PubSub() *PubSub {
	return &PubSub{c: c, ps: pubsubv1.NewPubSubClient(c.conn)}
}

// Publish sends payload to topic and returns the message id.
func (p *PubSub) Publish(ctx context.Context, topic string, payload []byte, metadata map[string]string) (string, error) {
	ctx, cancel := p.c.callContext(ctx)
	defer cancel()
	resp, err := p.ps.Publish(ctx, &pubsubv1.PublishRequest{Topic: topic, Payload: payload, Metadata: metadata})
	if err != nil {
		return "", fmt.Errorf("publish to %q: %w", topic, err)
	}
	return resp.GetId(), nil
}

// Ack acknowledges messages of a durable subscription by their ack tokens.
func (p *PubSub) Ack(ctx context.Context, topic, durable string, tokens ...string) error {
	ctx, cancel := p.c.callContext(ctx)
	defer cancel()
	if _, err := p.ps.Ack(ctx, &pubsubv1.AckRequest{Topic: topic, Durable: durable, AckTokens: tokens}); err != nil {
		return fmt.Errorf("ack %d messages on %q: %w", len(tokens), topic, err)
	}
	return nil
}

// Subscription says what to subscribe to.
type Subscription struct {
	// Topic is required.
	Topic string
	// QueueGroup shares the messages among the group's subscribers (pubsub.queue).
	QueueGroup string
	// Durable names a durable consumer (pubsub.durable).
	Durable string
	// AckWait is the durable consumer's ack deadline.
	AckWait time.Duration
}

// Message is a delivered message.
type Message struct {
	Topic           string
	Payload         []byte
	Metadata        map[string]string
	ID              string
	PublishTime     time.Time
	DeliveryAttempt int
	// AckToken acknowledges the message of a durable subscription.
	AckToken string
}

// Subscriber is an open subscription: a stream that lives until Close or
// its context ends (the client's timeout does not apply to it).
type Subscriber struct {
	stream  pubsubv1.PubSub_SubscribeClient
	cancel  context.CancelFunc
	dropped atomic.Int64
}

// Subscribe opens a subscription and returns once the plugin confirmed it.
func (p *PubSub) Subscribe(ctx context.Context, s Subscription) (*Subscriber, error) {
	if p.c.namespace != "" {
		ctx = withNamespace(ctx, p.c.namespace)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := p.ps.Subscribe(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe to %q: %w", s.Topic, err)
	}
	sub := &pubsubv1.Subscription{Topic: s.Topic, QueueGroup: s.QueueGroup, Durable: s.Durable}
	if s.AckWait > 0 {
		sub.AckWait = durationpb.New(s.AckWait)
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: sub}}); err != nil {
		_, err = stream.Recv() // the status explains the failed send
		cancel()
		return nil, fmt.Errorf("subscribe to %q: %w", s.Topic, err)
	}
	ev, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe to %q: %w", s.Topic, err)
	}
	if ev.GetSubscribed() == nil {
		cancel()
		return nil, fmt.Errorf("subscribe to %q: the first event is %T, want Subscribed", s.Topic, ev.GetEvent())
	}
	return &Subscriber{stream: stream, cancel: cancel}, nil
}

// Next returns the next message. It returns io.EOF after Close, and the
// stream's status when it ends otherwise.
func (s *Subscriber) Next() (*Message, error) {
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			return nil, err
		}
		switch e := ev.GetEvent().(type) {
		case *pubsubv1.SubscribeEvent_Message:
			m := e.Message
			return &Message{Topic: m.GetTopic(), Payload: m.GetPayload(), Metadata: m.GetMetadata(), ID: m.GetId(),
				PublishTime: m.GetPublishTime().AsTime(), DeliveryAttempt: int(m.GetDeliveryAttempt()), AckToken: m.GetAckToken()}, nil
		case *pubsubv1.SubscribeEvent_Dropped:
			s.dropped.Add(e.Dropped.GetCount())
		case *pubsubv1.SubscribeEvent_Unsubscribed:
			return nil, io.EOF
		}
	}
}

// Dropped returns how many messages the plugin reported dropped because
// this subscriber read too slowly.
func (s *Subscriber) Dropped() int64 { return s.dropped.Load() }

// Close unsubscribes and ends the stream.
func (s *Subscriber) Close() error {
	err := s.stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Unsubscribe{Unsubscribe: &pubsubv1.Unsubscribe{}}})
	_ = s.stream.CloseSend()
	s.cancel()
	if err != nil && err != io.EOF {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	return nil
}
